/* loop-runtime dashboard: live updates (server-sent events) and budget charts (uPlot).
 *
 * Plain JS, no build step, no network beyond this server. Text from the server is only
 * ever put in the page with textContent; the one innerHTML is the server-rendered
 * (already escaped) timeline fragment of this same origin.
 */
(function () {
  "use strict";

  var body = document.body;
  var charts = [];
  var chartTimer = null;
  var timelineTimer = null;

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function num(n) { return n === null || n === undefined ? "\u2014" : Number(n).toLocaleString("en-US"); }
  function when(iso) { return iso ? String(iso).replace("T", " ") : "\u2014"; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function phaseName(p) { return String(p || "").replace(/^phase:/, ""); }

  /* ---------------------------------------------------------------- spend bars */

  function setBars(root) {
    $$(".bar [data-pct]", root).forEach(function (f) {
      var pct = Math.max(0, Math.min(100, parseFloat(f.getAttribute("data-pct")) || 0));
      f.style.width = pct + "%";
    });
  }

  /* the tick page's phase bar: positions come as data attributes (the CSP allows no inline style) */
  function setSegments(root) {
    $$(".phase-bar .seg", root).forEach(function (s) {
      var left = Math.max(0, Math.min(100, parseFloat(s.getAttribute("data-left")) || 0));
      var width = Math.max(0, Math.min(100 - left, parseFloat(s.getAttribute("data-width")) || 0));
      s.style.left = left + "%";
      s.style.width = width + "%";
    });
  }

  function updateSpend(box, budget) {
    if (!box) { return; }
    var fill = $(".fill", box);
    var pct = budget.percent || 0;
    fill.setAttribute("data-pct", budget.cap ? 100 * budget.spent / budget.cap : 0);
    $(".held", box).setAttribute("data-pct", budget.cap ? 100 * budget.reserved / budget.cap : 0);
    fill.classList.toggle("warn", pct >= 80);
    fill.classList.toggle("over", pct >= 100);
    var text = num(budget.spent) + (budget.reserved ? " (+" + num(budget.reserved) + " held)" : "") + " / " + num(budget.cap);
    $(".spend-text", box).textContent = text;
    setBars(box);
  }

  /* ---------------------------------------------------------------- status snapshots */

  function setLevel(cell, level) {
    cell.replaceChildren(el("span", "lvl", level.configured));
    if (level.effective !== level.configured) {
      cell.appendChild(document.createTextNode(" \u2192 "));
      var eff = el("span", "lvl lvl-" + level.effective, level.effective);
      eff.title = level.reason || "";
      cell.appendChild(eff);
    }
  }

  function setLive(cell, lp, run) {
    cell.replaceChildren();
    if (lp.running) {
      run = run || {};
      cell.appendChild(el("span", "phase running", run.phase || "starting"));
      cell.appendChild(document.createTextNode(" "));
      cell.appendChild(el("span", "live-tokens muted", run.tokens ? num(run.tokens) + " tok" : ""));
    } else if (lp.killSwitch.engaged) {
      cell.appendChild(el("span", "phase paused", "paused"));
    } else {
      cell.appendChild(el("span", "muted", "idle"));
    }
  }

  function setRowAction(row, engaged) {
    var form = $(".row-actions form", row);
    if (!form) { return; }
    var btn = $("button", form);
    form.setAttribute("action", engaged ? "/resume" : "/kill");
    btn.textContent = engaged ? "Resume" : "Kill";
    btn.className = engaged ? "btn btn-sm" : "btn btn-sm btn-danger-outline";
  }

  function applyLoop(row, lp, run) {
    var f = function (name) { return $('[data-field="' + name + '"]', row); };
    setLevel(f("level"), lp.level);
    f("next").textContent = when(lp.nextRun);
    var last = f("last");
    last.replaceChildren();
    if (lp.lastRun) {
      var o = lp.lastRun.outcome || lp.lastRun.status;
      last.appendChild(el("span", "badge o-" + o, o));
      if (lp.lastRun.status !== "running") {
        last.appendChild(document.createTextNode(" "));
        last.appendChild(el("span", "muted", num(lp.lastRun.tokens) + " tok"));
      }
    } else {
      last.appendChild(el("span", "muted", "never"));
    }
    setLive(f("live"), lp, run);
    updateSpend(f("spend"), lp.budget);
    f("runs").textContent = lp.runs.today + (lp.runs.max ? " / " + lp.runs.max : "");
    var esc = f("esc");
    esc.replaceChildren();
    if (lp.openEscalations) {
      var a = el("a", "badge o-escalated", lp.openEscalations);
      a.href = "/escalations";
      esc.appendChild(a);
    } else {
      esc.appendChild(el("span", "muted", "0"));
    }
    row.classList.toggle("paused", !!lp.killSwitch.engaged);
    setRowAction(row, !!lp.killSwitch.engaged);
  }

  function applyStatus(doc) {
    var all = !!doc.killSwitch.all;
    var pill = $("#global-kill");
    if (pill) {
      pill.textContent = all ? "KILL SWITCH ON \u2014 all loops paused" : "Kill switch off";
      pill.className = "pill " + (all ? "pill-danger" : "pill-ok");
    }
    var state = $("#kill-all-state");
    if (state) {
      state.textContent = all ? "ENGAGED" : "off";
      state.parentElement.classList.toggle("engaged", all);
    }
    var running = $("#stat-running");
    if (running) { running.textContent = doc.loops.filter(function (l) { return l.running; }).length; }
    var escCount = $("#stat-esc a");
    if (escCount) { escCount.textContent = doc.loops.reduce(function (n, l) { return n + (l.openEscalations || 0); }, 0); }
    doc.loops.forEach(function (lp) {
      var row = $('#loops tr[data-pattern="' + CSS.escape(lp.pattern) + '"]');
      if (row) { applyLoop(row, lp, (doc.live || {})[lp.pattern]); }
      var head = $('.loop-head[data-pattern="' + CSS.escape(lp.pattern) + '"]');
      if (head) { updateSpend($('[data-field="spend"]', head), lp.budget); }
    });
  }

  /* ---------------------------------------------------------------- store events */

  function addActivity(ev) {
    var list = $("#activity");
    if (!list || !ev.text) { return; }
    var empty = $(".empty", list);
    if (empty) { empty.remove(); }
    var li = el("li", "fresh");
    li.appendChild(el("time", "mono", String(ev.at || "").slice(11, 19)));
    var text;
    if (ev.href && /^\/ticks\/[A-Za-z0-9][A-Za-z0-9._:-]*$/.test(ev.href)) {
      text = el("a", "sentence", ev.text);
      text.href = ev.href;
    } else {
      text = el("span", "sentence", ev.text);
    }
    li.appendChild(text);
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 40) { list.removeChild(list.lastChild); }
  }

  function liveCell(pattern) {
    var row = $('#loops tr[data-pattern="' + CSS.escape(pattern || "") + '"]');
    return row ? $('[data-field="live"]', row) : null;
  }

  function onStoreEvent(ev) {
    addActivity(ev);
    var cell = liveCell(ev.pattern);
    if (cell && ev.kind === "tick.phase") {
      var tokens = $(".live-tokens", cell);
      var keep = tokens ? tokens.textContent : "";
      cell.replaceChildren(el("span", "phase running", phaseName(ev.payload.phase)), document.createTextNode(" "),
                           el("span", "live-tokens muted", keep));
    } else if (cell && ev.kind === "tick.usage") {
      var t = $(".live-tokens", cell);
      if (t) { t.textContent = num(ev.payload.tokens) + " tok"; }
    }
    if (ev.kind === "tick.end" || ev.kind === "budget.topup") { scheduleCharts(500); }
    if (body.dataset.pattern && ev.pattern === body.dataset.pattern && ev.kind.indexOf("tick.") === 0) {
      scheduleTimeline();
    }
  }

  function scheduleTimeline() {
    var box = $("#timeline");
    if (!box || timelineTimer) { return; }
    timelineTimer = setTimeout(function () {
      timelineTimer = null;
      fetch(box.getAttribute("data-url"), { headers: { accept: "text/html" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) { return; }
          var open = $$("details[open]", box).map(function (d) { return d.closest("tr").getAttribute("data-tick"); });
          box.innerHTML = html; // server-rendered, autoescaped fragment from this origin
          open.forEach(function (id) {
            var d = $('tr[data-tick="' + CSS.escape(id) + '"] details', box);
            if (d) { d.open = true; }
          });
        })
        .catch(function () { /* next event retries */ });
    }, 400);
  }

  function setConnected(on) {
    var live = $("#live");
    if (!live) { return; }
    live.textContent = on ? "\u25cf live" : "\u25cb reconnecting\u2026";
    live.classList.toggle("on", on);
  }

  function connect() {
    if (!window.EventSource) { return; }
    var since = body.getAttribute("data-since");
    var es = new EventSource("/events" + (since ? "?since=" + encodeURIComponent(since) : ""));
    es.onopen = function () { setConnected(true); };
    es.onerror = function () { setConnected(false); };
    es.addEventListener("status", function (e) { setConnected(true); applyStatus(JSON.parse(e.data)); });
    es.addEventListener("store", function (e) { onStoreEvent(JSON.parse(e.data)); });
  }

  /* ---------------------------------------------------------------- charts (uPlot) */

  var BLUE = "#2f5bd3", RED = "#c53030";

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }

  function hourLabels(u, splits) {
    return splits.map(function (s) { var d = new Date(s * 1e3); return String(d.getUTCHours()).padStart(2, "0") + ":00"; });
  }

  function dayLabels(u, splits) {
    var roomy = (u.width - 60) / Math.max(1, splits.length) >= 44;
    return splits.map(function (s) {
      var iso = new Date(s * 1e3).toISOString();
      return roomy ? iso.slice(5, 10) : String(Number(iso.slice(8, 10)));
    });
  }

  function compact(u, splits) {
    return splits.map(function (v) {
      if (v === null) { return ""; }
      var k = function (x, unit) { return (x >= 10 ? String(Math.round(x)) : x.toFixed(1).replace(/\.0$/, "")) + unit; };
      return v >= 1e6 ? k(v / 1e6, "M") : v >= 1e3 ? k(v / 1e3, "k") : String(v);
    });
  }

  var PALETTE = ["#2f5bd3", "#1f8a4c", "#b7791f", "#8e44ad", "#c05621", "#2c7a7b", "#718096"];

  function yRange(yMax) { return function () { return [0, yMax || 1]; }; }

  function baseOpts(width, series, xs, yMax, dayStart, dayEnd) {
    return {
      width: width, height: 190, tzDate: utc, series: series,
      scales: { x: { time: true, range: [dayStart, dayEnd] }, y: { range: yRange(yMax) } },
      axes: [{ values: hourLabels, space: 50, size: 28 }, { values: compact, size: 48 }],
      legend: { live: false }, cursor: { drag: { x: false, y: false } }
    };
  }

  /* Today's cumulative spend, scaled to the spend; the cap as a step (it rises at a top-up) when on scale. */
  function burnDown(target, bd, width) {
    var stepped = uPlot.paths.stepped({ align: 1 });
    var series = [{}, { label: "spent", stroke: BLUE, width: 2, fill: "rgba(47,91,211,0.12)", points: { show: false },
                        paths: stepped, value: function (u, v) { return num(v); } }];
    var data = [bd.x, bd.spent];
    if (bd.cap !== null && bd.capVisible) {
      series.push({ label: "cap", stroke: RED, width: 1.5, dash: [5, 4], points: { show: false }, paths: stepped,
                    value: function (u, v) { return num(v); } });
      data.push(bd.capSteps);
    }
    return new uPlot(baseOpts(width, series, bd.x, bd.yMax, bd.dayStart, bd.dayEnd), data, target);
  }

  function barsOpts(width, series, h) {
    return {
      width: width, height: 190, tzDate: utc, series: series,
      scales: { x: { time: true, range: function (u, min, max) { return [min - 43200, max + 43200]; } }, y: { range: yRange(h.yMax) } },
      axes: [{ values: dayLabels, space: 40, size: 28, splits: function () { return h.x; } }, { values: compact, size: 48 }],
      legend: { live: false }, cursor: { drag: { x: false, y: false } }
    };
  }

  function historyChart(target, h, width) {
    var series = [{}, { label: "tokens/day", stroke: BLUE, fill: "rgba(47,91,211,0.75)", width: 1,
                        paths: uPlot.paths.bars({ size: [0.6, 40] }), points: { show: false }, value: function (u, v) { return num(v); } }];
    var data = [h.x, h.tokens];
    if (h.capVisible) {
      series.push({ label: "cap", stroke: RED, width: 1, dash: [4, 4], points: { show: false }, paths: uPlot.paths.stepped({ align: 1 }),
                    value: function (u, v) { return num(v); } });
      data.push(h.cap);
    }
    return new uPlot(barsOpts(width, series, h), data, target);
  }

  /* Several loops: each loop's share stacked (drawn total-first so every layer shows). */
  function stackedCharts(box, st) {
    var card = el("div", "chart-card stacked");
    card.setAttribute("data-chart", "stacked");
    var total = st.series[st.series.length - 1].cumulative;
    var title = el("h3", null, "All loops ");
    title.appendChild(el("small", "muted", num(total[total.length - 1]) + " tokens today, stacked by loop"));
    card.appendChild(title);
    var pair = el("div", "chart-pair");
    var left = el("div"), right = el("div");
    left.appendChild(el("div", "chart-label", "Spend today by loop, UTC"));
    right.appendChild(el("div", "chart-label", "Last 7 days by loop"));
    pair.appendChild(left);
    pair.appendChild(right);
    card.appendChild(pair);
    box.appendChild(card);
    return function () { drawStacked(st, left, right); };
  }

  function drawStacked(st, left, right) {
    var lw = Math.max(220, left.clientWidth), rw = Math.max(180, right.clientWidth);
    var series = [{}], data = [st.x];
    for (var i = st.series.length - 1; i >= 0; i--) {
      var c = PALETTE[i % PALETTE.length];
      series.push({ label: st.series[i].name, stroke: c, width: 1.5, fill: c + "cc", points: { show: false },
                    paths: uPlot.paths.stepped({ align: 1 }), value: function (u, v) { return num(v); } });
      data.push(st.series[i].cumulative);
    }
    if (st.capVisible) {
      series.push({ label: "caps", stroke: RED, width: 1.5, dash: [5, 4], points: { show: false }, paths: uPlot.paths.stepped({ align: 1 }) });
      data.push(st.capSteps);
    }
    charts.push(new uPlot(baseOpts(lw, series, st.x, st.yMax, st.dayStart, st.dayEnd), data, left));
    var hs = [{}], hd = [st.history.x];
    for (var j = st.history.series.length - 1; j >= 0; j--) {
      var hc = PALETTE[j % PALETTE.length];
      hs.push({ label: st.history.series[j].name, stroke: hc, fill: hc, width: 0, points: { show: false },
                paths: uPlot.paths.bars({ size: [0.6, 40] }), value: function (u, v) { return num(v); } });
      hd.push(st.history.series[j].cumulative);
    }
    charts.push(new uPlot(barsOpts(rw, hs, st.history), hd, right));
  }

  function drawCharts(doc) {
    var box = $("#budget-charts");
    var want = (box.getAttribute("data-patterns") || "").split(",");
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    box.replaceChildren();
    var draws = [];  /* every card is laid out first, then charts are sized to their final boxes */
    if (doc.stacked && want.length > 1) { draws.push(stackedCharts(box, doc.stacked)); }
    doc.loops.filter(function (lp) { return want.indexOf(lp.pattern) >= 0; }).forEach(function (lp) {
      var card = el("div", "chart-card");
      card.setAttribute("data-chart", lp.pattern);
      var bd = lp.burnDown;
      var spent = bd.spent[bd.spent.length - 1];
      var title = el("h3", null, lp.name + " ");
      var pct = bd.percent !== null && bd.percent !== undefined ? " (" + bd.percent + "% of the cap)" : "";
      title.appendChild(el("small", "muted", num(spent) + " / " + num(bd.cap) + " tokens today" + pct));
      card.appendChild(title);
      var pair = el("div", "chart-pair");
      var left = el("div"), right = el("div");
      var note = bd.cap !== null && !bd.capVisible ? " \u00b7 cap " + num(bd.cap) + " is above this scale" : "";
      left.appendChild(el("div", "chart-label", "Spent today, UTC" + note));
      right.appendChild(el("div", "chart-label", "Last 7 days"));
      pair.appendChild(left);
      pair.appendChild(right);
      card.appendChild(pair);
      box.appendChild(card);
      draws.push(function () {
        var lw = Math.max(220, left.clientWidth), rw = Math.max(180, right.clientWidth);
        charts.push(burnDown(left, bd, lw));
        charts.push(historyChart(right, lp.history, rw));
      });
    });
    draws.forEach(function (draw) { draw(); });
    if (!charts.length) { box.appendChild(el("p", "muted", "No loops to chart.")); }
  }

  function loadCharts() {
    var box = $("#budget-charts");
    if (!box || !window.uPlot) { return; }
    fetch("/api/budget", { headers: { accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(drawCharts)
      .catch(function () { box.replaceChildren(el("p", "muted", "Charts unavailable.")); });
  }

  function scheduleCharts(ms) {
    if (chartTimer) { clearTimeout(chartTimer); }
    chartTimer = setTimeout(function () { chartTimer = null; loadCharts(); }, ms);
  }

  /* ---------------------------------------------------------------- start */

  setBars(document);
  setSegments(document);
  loadCharts();
  setInterval(loadCharts, 60000);
  window.addEventListener("resize", function () { scheduleCharts(300); });
  connect();
})();
