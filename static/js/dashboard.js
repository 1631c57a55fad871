// Candlestick chart with signal and fill markers; redrawn when the worker pushes an event.
(function () {
  "use strict";
  function init() {
    var el = document.getElementById("chart");
    if (!el || !window.LightweightCharts) { return; }
    var chart = LightweightCharts.createChart(el, {
      height: 380,
      layout: { background: { color: "#0f1720" }, textColor: "#cbd5e1" },
      grid: { vertLines: { color: "#1e293b" }, horzLines: { color: "#1e293b" } },
      timeScale: { timeVisible: true, secondsVisible: false },
    });
    var candles = chart.addCandlestickSeries();
    var volume = chart.addHistogramSeries({ priceFormat: { type: "volume" }, priceScaleId: "" });
    volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    // EMA overlay (computed by the server with TA-Lib, as the features are).
    var ema = chart.addLineSeries({ color: "#f59e0b", lineWidth: 1, priceLineVisible: false, lastValueVisible: false });
    // Sentiment strip: mean headline sentiment per bar, in a band at the top of the pane.
    var sentiment = chart.addHistogramSeries({ priceScaleId: "sentiment", priceFormat: { type: "price", precision: 2, minMove: 0.01 }, lastValueVisible: false, priceLineVisible: false });
    sentiment.priceScale().applyOptions({ scaleMargins: { top: 0, bottom: 0.88 }, visible: false });

    function load() {
      fetch(el.dataset.url, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          candles.setData(data.candles);
          volume.setData(data.candles.map(function (c) {
            return { time: c.time, value: c.volume, color: c.close >= c.open ? "#14532d" : "#7f1d1d" };
          }));
          ema.setData(data.ema);
          sentiment.setData(data.sentiment.map(function (b) {
            return { time: b.time, value: b.value, color: b.value >= 0 ? "#22c55e" : "#ef4444" };
          }));
          el.dataset.loaded = String(data.candles.length);
          el.dispatchEvent(new CustomEvent("chart:loaded", { bubbles: true }));
          var markers = data.signals.map(function (s) {
            return s.action === "BUY"
              ? { time: s.time, position: "belowBar", color: "#22c55e", shape: "arrowUp", text: "BUY" }
              : { time: s.time, position: "aboveBar", color: "#ef4444", shape: "arrowDown", text: "SELL" };
          }).concat(data.fills.filter(function (f) { return f.time; }).map(function (f) {
            return { time: f.time, position: f.side === "BUY" ? "belowBar" : "aboveBar",
                     color: "#38bdf8", shape: "circle", text: f.side + " " + f.price.toFixed(2) };
          }));
          markers.sort(function (a, b) { return a.time - b.time; });
          candles.setMarkers(markers);
        });
    }
    load();

    var pending = null;
    new MutationObserver(function () {
      var events = document.querySelectorAll("#chart-events .chart-event");
      var relevant = Array.prototype.some.call(events, function (e) {
        return e.dataset.market === el.dataset.market;
      });
      document.getElementById("chart-events").innerHTML = "";
      if (relevant && !pending) {
        pending = setTimeout(function () { pending = null; load(); }, 300);
      }
    }).observe(document.getElementById("chart-events"), { childList: true });
    window.addEventListener("resize", function () { chart.applyOptions({ width: el.clientWidth }); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
