// The console's few behaviours. No inline script anywhere (the pages' CSP forbids it).
(function () {
  "use strict";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // htmx: every request carries the session's CSRF token; error answers (4xx/5xx) are
  // swapped like any other, so their message shows where the result would have.
  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrf();
  });
  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) {
      htmx.config.responseHandling = [
        { code: "204", swap: false },
        { code: "...", swap: true },
      ];
    }
  });

  // Live fragments: an element with data-sse="url" is replaced, frame by frame, by the
  // HTML of each `update` event; the `done` event ends the stream.
  function live(el) {
    if (el.dataset.sseOpen) return;
    el.dataset.sseOpen = "1";
    var source = new EventSource(el.dataset.sse);
    var updates = 0;
    source.addEventListener("update", function (e) {
      updates += 1;
      if (e.data === el.innerHTML.trim()) return;
      el.innerHTML = e.data;
      wire(el); // its forms' confirmations (a workflow's buttons come in its frames)
      if (updates > 1) {
        el.classList.remove("flash");
        void el.offsetWidth; // restart the highlight
        el.classList.add("flash");
      }
    });
    source.addEventListener("done", function () {
      source.close();
      el.dataset.sseDone = "1";
      // The job finished while this page watched it (more than the first frame arrived):
      // reload once for its attempts, result and buttons.
      if (el.id === "job-live" && updates > 1) window.location.reload();
    });
  }

  function charts(root) {
    if (!window.uPlot) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.drawn) return;
      el.dataset.drawn = "1";
      var data = JSON.parse(document.getElementById(el.dataset.chart).textContent);
      var names = Object.keys(data.series);
      var colors = { succeeded: "#2f9e44", dead: "#e03131", retried: "#f08c00" };
      var opts = {
        width: el.clientWidth || 600,
        height: el.classList.contains("small") ? 140 : 200,
        series: [{}].concat(names.map(function (n) {
          return { label: n, stroke: colors[n] || "#1c7ed6", width: 2, points: { show: false } };
        })),
        axes: [{}, { size: 40 }],
      };
      if (el.dataset.band) {
        var band = el.dataset.band.split(",").map(Number);
        opts.hooks = { draw: [function (u) {
          var x0 = u.valToPos(band[0], "x", true), x1 = u.valToPos(band[1], "x", true);
          u.ctx.save(); u.ctx.fillStyle = "rgba(224,49,49,0.12)";
          u.ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height); u.ctx.restore();
        }] };
      }
      new uPlot(opts, [data.x].concat(names.map(function (n) { return data.series[n]; })), el);
    });
  }

  function wire(root) {
    root.querySelectorAll("[data-sse]").forEach(live);
    root.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
    root.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.dataset.confirm)) e.preventDefault();
      });
    });
    charts(root);
  }

  document.addEventListener("DOMContentLoaded", function () { wire(document); });
  document.addEventListener("htmx:afterSwap", function (e) { wire(e.target); });
})();
