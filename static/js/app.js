// Toasts: Django messages rendered in #toasts, HX-Trigger {"toast": {...}} headers, failed
// htmx requests (with the server's reason) and toasts pushed over the live socket.
(function () {
  "use strict";
  var LIFETIME_MS = 8000;

  function area() { return document.getElementById("toasts"); }

  // The kinds of pushed toasts (data-kind: fill, signal, risk) the user turned off in
  // their settings; the base layout names them on <body data-notify-muted="...">.
  function muted(toast) {
    var kind = toast.dataset.kind;
    var off = (document.body.dataset.notifyMuted || "").split(" ");
    return Boolean(kind) && off.indexOf(kind) !== -1;
  }

  function schedule(toast) {
    if (muted(toast)) { toast.remove(); return; }
    if (toast.dataset.scheduled) { return; }
    toast.dataset.scheduled = "1";
    if (!toast.classList.contains("error")) {
      setTimeout(function () { toast.remove(); }, LIFETIME_MS);
    }
  }

  function show(level, text) {
    var box = area();
    if (!box || !text) { return; }
    var toast = document.createElement("div");
    toast.className = "toast " + (level || "info");
    toast.setAttribute("role", "status");
    var span = document.createElement("span");
    span.textContent = text;  // never innerHTML: the reason may echo user input
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    toast.appendChild(span);
    toast.appendChild(close);
    box.appendChild(toast);
  }
  window.qtToast = show;

  function init() {
    var box = area();
    if (!box) { return; }
    Array.prototype.forEach.call(box.querySelectorAll(".toast"), schedule);
    new MutationObserver(function () {
      Array.prototype.forEach.call(box.querySelectorAll(".toast"), schedule);
    }).observe(box, { childList: true, subtree: true });
    box.addEventListener("click", function (e) {
      if (e.target.classList.contains("toast-close")) { e.target.parentNode.remove(); }
    });
    document.body.addEventListener("toast", function (e) {
      var d = e.detail || {};
      show(d.level, d.message || d.value);
    });
    // quantum/toasts.py: HX-Trigger {"toasts": {"items": [{level, message}, ...]}}.
    document.body.addEventListener("toasts", function (e) {
      ((e.detail || {}).items || []).forEach(function (t) { show(t.level, t.message); });
    });
    document.body.addEventListener("htmx:responseError", function (e) {
      var xhr = e.detail.xhr;
      var reason = (xhr.getResponseHeader("X-QT-Reason") || xhr.statusText || "").trim();
      show("error", "Failed (" + xhr.status + ")" + (reason ? ": " + reason : ""));
    });
    document.body.addEventListener("htmx:sendError", function () {
      show("error", "Failed: the server could not be reached.");
    });
    // The live socket's state, for the page (a class on <body>) and for the browser tests.
    document.body.addEventListener("htmx:wsOpen", function () {
      window.__qtSocketOpen = true;
      document.body.classList.add("live-open");
    });
    document.body.addEventListener("htmx:wsClose", function () {
      window.__qtSocketOpen = false;
      document.body.classList.remove("live-open");
    });
    // Phone layout: a chosen link closes the menu.
    var toggle = document.getElementById("nav-toggle");
    var nav = document.getElementById("nav");
    if (toggle && nav) {
      nav.addEventListener("click", function () { toggle.checked = false; });
    }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
