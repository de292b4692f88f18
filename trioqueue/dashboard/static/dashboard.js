// trioqueue dashboard: polls the page's JSON document and fills the bound elements.
// Every value is set with textContent or as an attribute value: never as HTML.
"use strict";
(function () {
  var main = document.querySelector("main");
  var root = document.querySelector('meta[name="root"]').content;
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var api = main.dataset.api;
  var every = Math.max(1, parseFloat(main.dataset.interval || "5")) * 1000;
  var live = document.getElementById("live");
  var errorBox = document.getElementById("error");
  var lastDead = null;

  function get(doc, path) {
    if (!path) return doc;
    return path.split(".").reduce(function (o, k) { return o == null ? o : o[k]; }, doc);
  }

  function fmt(v, kind) {
    if (v === null || v === undefined || v === "") return "-";
    if (kind === "time") {
      var d = typeof v === "number" ? new Date(v * 1000) : new Date(v);
      return isNaN(d) ? String(v) : d.toISOString().replace("T", " ").slice(0, 19);
    }
    if (kind === "json") return JSON.stringify(v);
    if (kind === "progress") {
      if (typeof v === "number" && v >= 0 && v <= 1) return Math.round(v * 100) + " %";
      return typeof v === "string" ? v : JSON.stringify(v);
    }
    if (Array.isArray(v)) return v.join(", ") || "-";
    if (typeof v === "boolean") return v ? "yes" : "no";
    return String(v);
  }

  function fill(el, v) {
    var kind = el.dataset.k;
    if (kind === "state") {
      el.className = "state s-" + (String(v).toLowerCase().replace(/[^a-z]/g, "") || "none");
      el.textContent = fmt(v);
    } else if (kind === "link") {
      el.textContent = fmt(v);
      el.setAttribute("href", root + el.dataset.prefix + encodeURIComponent(String(v)));
    } else if (kind === "check") {
      el.value = String(v);
    } else if (kind === "button") {
      el.dataset.v = String(v);
    } else {
      el.textContent = fmt(v, kind);
    }
  }

  function bind(scope, doc) {
    scope.querySelectorAll("[data-f]").forEach(function (el) {
      if (el.closest("table[data-rows]") && scope === main) return;
      var v = get(doc, el.dataset.f);
      if (v !== undefined) fill(el, v);
    });
  }

  function rows(table, items) {
    var tbody = table.tBodies[0];
    var checked = {};
    tbody.querySelectorAll("input[type=checkbox]:checked").forEach(function (c) { checked[c.value] = true; });
    var tpl = table.querySelector("template").content.firstElementChild;
    var out = [];
    items.forEach(function (item) {
      var tr = tpl.cloneNode(true);
      tr.querySelectorAll("[data-f]").forEach(function (el) { fill(el, item[el.dataset.f]); });
      tr.querySelectorAll("input[type=checkbox]").forEach(function (c) { c.checked = !!checked[c.value]; });
      out.push(tr);
    });
    if (!out.length) {
      var tr = document.createElement("tr");
      var td = document.createElement("td");
      tr.className = "empty";
      td.colSpan = tpl.children.length;
      td.textContent = table.dataset.empty;
      tr.appendChild(td);
      out.push(tr);
    }
    tbody.replaceChildren.apply(tbody, out);
  }

  var SVG = "http://www.w3.org/2000/svg";
  function chart(queues) {
    var box = document.getElementById("chart");
    if (!box) return;
    var points = null;
    queues.forEach(function (q) {
      if (!q.history) return;
      points = points || q.history.map(function (p) { return { minute: p.minute, ok: 0, bad: 0 }; });
      q.history.forEach(function (p, i) { points[i].ok += p.succeeded; points[i].bad += p.failed + p.dead; });
    });
    if (!points) {
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = "no history yet";
      box.replaceChildren(p);
      return;
    }
    var max = Math.max(1, Math.max.apply(null, points.map(function (p) { return p.ok + p.bad; })));
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + points.length * 10 + " 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "jobs per minute, last hour");
    points.forEach(function (p, i) {
      var hOk = (p.ok / max) * 100, hBad = (p.bad / max) * 100;
      [["ok", hOk, 100 - hOk], ["bad", hBad, 100 - hOk - hBad]].forEach(function (b) {
        if (!b[1]) return;
        var r = document.createElementNS(SVG, "rect");
        r.setAttribute("class", b[0]);
        r.setAttribute("x", String(i * 10 + 1));
        r.setAttribute("width", "8");
        r.setAttribute("y", String(b[2]));
        r.setAttribute("height", String(b[1]));
        var t = document.createElementNS(SVG, "title");
        t.textContent = new Date(p.minute).toISOString().slice(11, 16) + ": " + p.ok + " succeeded, " + p.bad + " failed";
        r.appendChild(t);
        svg.appendChild(r);
      });
    });
    box.replaceChildren(svg);
  }

  function render(doc) {
    bind(main, doc);
    main.querySelectorAll("table[data-rows]").forEach(function (t) {
      var items = get(doc, t.dataset.rows);
      if (t.dataset.rows && Array.isArray(items)) rows(t, items);
    });
    if (doc.queues) chart(doc.queues);
    errorBox.hidden = !doc.snapshot_error;
    errorBox.textContent = doc.snapshot_error ? "broker: " + doc.snapshot_error : "";
  }

  function poll() {
    if (!api) return Promise.resolve();
    var url = api;
    var dead = api.indexOf(root + "/api/dead/") === 0;
    if (dead) url = api.replace("/api/dead/", "/api/queues/").split("?")[0];
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { location.href = root + "/login"; throw new Error("login"); }
        return r.json();
      })
      .then(function (doc) {
        live.textContent = "live";
        live.className = "live";
        if (dead) {
          // The list is read from the broker: only again when the count changed.
          if (lastDead !== null && doc.dead !== lastDead) return reloadDead();
          lastDead = doc.dead;
          return;
        }
        render(doc);
      })
      .catch(function () { live.textContent = "offline"; live.className = "live off"; });
  }

  function reloadDead() {
    return fetch(api, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (doc) { lastDead = doc.total; render(doc); });
  }

  function post(path, body) {
    return fetch(root + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    }).then(function (r) {
      return r.json().then(function (doc) {
        if (!r.ok) throw new Error(doc.error || r.statusText);
        return doc;
      });
    });
  }

  function selected() {
    return Array.prototype.map.call(main.querySelectorAll("input[type=checkbox]:checked"), function (c) { return c.value; });
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-act]");
    if (!btn) return;
    var act = btn.dataset.act, v = btn.dataset.v;
    var bar = main.querySelector("[data-queue]");
    var q = bar ? encodeURIComponent(bar.dataset.queue) : null;
    var todo = {
      pause: function () { return post("/api/queues/" + encodeURIComponent(v) + "/pause"); },
      resume: function () { return post("/api/queues/" + encodeURIComponent(v) + "/resume"); },
      cancel: function () { return post("/api/jobs/" + encodeURIComponent(v) + "/cancel"); },
      "retry-one": function () { return post("/api/dead/" + q + "/retry", { ids: [v] }); },
      "purge-one": function () { return confirm("Purge this dead letter?") && post("/api/dead/" + q + "/purge", { ids: [v] }); },
      "retry-selected": function () { var ids = selected(); return ids.length && post("/api/dead/" + q + "/retry", { ids: ids }); },
      "purge-selected": function () { var ids = selected(); return ids.length && confirm("Purge " + ids.length + " dead letters?") && post("/api/dead/" + q + "/purge", { ids: ids }); },
      "retry-all": function () { return confirm("Re-send every dead letter of " + q + "?") && post("/api/dead/" + q + "/retry", { all: true }); },
      "purge-all": function () { return confirm("Delete every dead letter of " + q + "? This cannot be undone.") && post("/api/dead/" + q + "/purge", { all: true }); },
    }[act];
    if (!todo) return;
    btn.disabled = true;
    Promise.resolve(todo())
      .then(function (done) {
        if (!done) return;
        errorBox.hidden = true;
        return q ? reloadDead() : poll();
      })
      .catch(function (err) { errorBox.hidden = false; errorBox.textContent = String(err.message || err); })
      .then(function () { btn.disabled = false; });
  });

  if (api) {
    poll();
    setInterval(poll, every);
  }
})();
