// A backtest report's charts: equity with trade markers, and drawdown, from the page's JSON.
(function () {
  "use strict";
  var theme = {
    height: 280,
    layout: { background: { color: "#0f1720" }, textColor: "#cbd5e1" },
    grid: { vertLines: { color: "#1e293b" }, horzLines: { color: "#1e293b" } },
    timeScale: { timeVisible: false },
  };
  function chart(id) {
    var el = document.getElementById(id);
    if (!el) { return null; }
    var c = LightweightCharts.createChart(el, theme);
    window.addEventListener("resize", function () { c.applyOptions({ width: el.clientWidth }); });
    return c;
  }
  function init() {
    var data = document.getElementById("backtest-charts");
    if (!data || !window.LightweightCharts) { return; }
    var charts = JSON.parse(data.textContent);
    var eq = chart("backtest-equity-chart");
    if (eq) {
      var line = eq.addAreaSeries({ lineColor: "#38bdf8", topColor: "#38bdf833", bottomColor: "#38bdf805", lineWidth: 2 });
      line.setData(charts.equity);
      if (charts.markers.length && line.setMarkers) { line.setMarkers(charts.markers); }
      eq.timeScale().fitContent();
    }
    var dd = chart("backtest-drawdown-chart");
    if (dd) {
      var area = dd.addAreaSeries({ lineColor: "#ef4444", topColor: "#ef444405", bottomColor: "#ef444455", lineWidth: 1, invertFilledArea: true });
      area.setData(charts.drawdown);
      dd.timeScale().fitContent();
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
