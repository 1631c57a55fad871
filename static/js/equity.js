// The account's equity curve (positions page), from the JSON embedded in the page.
(function () {
  "use strict";
  function init() {
    var el = document.getElementById("equity-chart");
    var data = document.getElementById("equity-data");
    if (!el || !data || !window.LightweightCharts) { return; }
    var chart = LightweightCharts.createChart(el, {
      height: 260,
      layout: { background: { color: "#0f1720" }, textColor: "#cbd5e1" },
      grid: { vertLines: { color: "#1e293b" }, horzLines: { color: "#1e293b" } },
      timeScale: { timeVisible: true, secondsVisible: false },
    });
    var series = chart.addAreaSeries({ lineColor: "#38bdf8", topColor: "#38bdf833", bottomColor: "#38bdf805", lineWidth: 2 });
    series.setData(JSON.parse(data.textContent));
    chart.timeScale().fitContent();
    window.addEventListener("resize", function () { chart.applyOptions({ width: el.clientWidth }); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
