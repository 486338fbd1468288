// hookgate dashboard: the only script, served from /ui/static (the CSP allows no other). Pages work without it.
// 1. Live pages (body[data-poll]) fetch themselves every few seconds (or ten times as long as the last fetch
//    took, when that is longer) and swap each [data-live][id] region, unless the reader is typing in a form;
//    polling stops once a page says it is final (no data-poll).
// 2. A textarea[data-json] (the rerun editor) is checked as JSON while typing; the form is not sent invalid.
(function () {
  "use strict";

  function swap(html) {
    var next = new DOMParser().parseFromString(html, "text/html");
    var regions = document.querySelectorAll("[data-live][id]");
    for (var i = 0; i < regions.length; i++) {
      var fresh = next.getElementById(regions[i].id);
      if (fresh && fresh.innerHTML !== regions[i].innerHTML) {
        regions[i].replaceWith(document.importNode(fresh, true));
      }
    }
    return next.body.hasAttribute("data-poll");
  }

  function busy() {
    var active = document.activeElement;
    return active && active.closest && active.closest("form") !== null && active.tagName !== "BUTTON";
  }

  function poll(every) {
    var failures = 0;
    var took = 0;  // ms the last refresh took: a page slow to make is asked for less often (10x its cost)
    function tick() {
      if (document.hidden || busy()) { return schedule(); }
      var started = Date.now();
      fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "dashboard" } })
        .then(function (response) {
          took = Date.now() - started;
          if (response.redirected || !response.ok) { throw new Error("status " + response.status); }
          return response.text();
        })
        .then(function (html) {
          failures = 0;
          if (swap(html)) { schedule(); } else { document.body.removeAttribute("data-poll"); }
        })
        .catch(function () {
          failures += 1;  // the gateway restarted, or the session ended: back off, a reload will show why
          if (failures < 5) { schedule(); }
        });
    }
    function schedule() { setTimeout(tick, Math.max(every, 10 * took) * Math.min(1 + failures, 5)); }
    schedule();
  }

  function jsonEditor(area) {
    var status = document.getElementById(area.getAttribute("aria-describedby"));
    function check() {
      try {
        JSON.parse(area.value);
        area.removeAttribute("aria-invalid");
        if (status) { status.textContent = "Valid JSON."; }
        return true;
      } catch (e) {
        area.setAttribute("aria-invalid", "true");
        if (status) { status.textContent = "Not valid JSON: " + e.message; }
        return false;
      }
    }
    area.addEventListener("input", check);
    area.form.addEventListener("submit", function (event) {
      if (!check()) { event.preventDefault(); area.focus(); }
    });
    check();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var every = parseInt(document.body.getAttribute("data-poll") || "", 10);
    if (every > 0 && window.fetch && window.DOMParser) { poll(every); }
    var editors = document.querySelectorAll("textarea[data-json]");
    for (var i = 0; i < editors.length; i++) { jsonEditor(editors[i]); }
  });
})();
