// setpiece sim --serve: the run's graph, animated from the frames of the WebSocket /ws
// (graph first, then one tick per timeline sample, then the summary). ?speed=X or ?speed=max
// sets the pace; the buttons change it.
(function () {
  "use strict";
  var base = location.pathname.replace(/[^/]*$/, "");
  var state = { cy: null, graph: null, tick: null, ticks: 0, totals: {}, summary: null,
                ws: null, error: null };
  window.setpieceSim = state; // for tests and the curious

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function row(table, cells, cls) {
    var tr = el("tr", undefined, cls);
    cells.forEach(function (c, i) { tr.appendChild(el("td", String(c), i ? "n" : "")); });
    table.appendChild(tr);
  }

  function status(text) { document.getElementById("status").textContent = text; }

  function drawGraph(frame) {
    state.graph = frame.graph;
    document.getElementById("title").textContent = "setpiece sim · " + frame.graph.arch;
    var elements = frame.graph.nodes.map(function (n) {
      state.totals[n.id] = { requests: 0, errors: 0 };
      return { data: { id: n.id, label: n.id + "\n" + n.instances + " up",
                       alive: n.instances, requests: 0, errors: 0 } };
    });
    frame.graph.edges.forEach(function (e) {
      elements.push({ data: { id: e.source + ">" + e.target + ":" + e.kind, source: e.source,
                              target: e.target, kind: e.kind, label: "" } });
    });
    state.cy = cytoscape({
      container: document.getElementById("graph"),
      elements: elements,
      layout: { name: "breadthfirst", directed: true, roots: ["client"], spacingFactor: 1.1 },
      style: [
        { selector: "node", style: {
            "label": "data(label)", "text-wrap": "wrap", "text-valign": "bottom",
            "font-size": 10, "background-color": "#5b8def", "width": 26, "height": 26 } },
        { selector: "node.erroring", style: { "background-color": "#c0392b" } },
        { selector: "node.dead", style: { "background-color": "#9aa5b1", "color": "#9aa5b1" } },
        { selector: "edge", style: {
            "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 1,
            "line-color": "#9fb3c8", "target-arrow-color": "#9fb3c8", "label": "data(label)",
            "font-size": 8 } },
        { selector: "edge[kind = 'async']", style: { "line-style": "dashed" } },
        { selector: "edge[kind = 'stream']", style: { "line-style": "dotted" } },
        { selector: "edge.erroring", style: {
            "line-color": "#c0392b", "target-arrow-color": "#c0392b" } }
      ]
    });
  }

  function zonesTable(tick) {
    var table = document.getElementById("zones");
    table.textContent = "";
    Object.keys(tick.zones).forEach(function (zone) {
      var dead = tick.dead_zones.indexOf(zone) >= 0 || !tick.zones[zone];
      row(table, [zone, tick.zones[zone] + " up"], dead ? "dead" : "");
    });
  }

  function showTick(tick) {
    state.tick = tick;
    state.ticks += 1;
    var cy = state.cy;
    cy.batch(function () {
      Object.keys(tick.services).forEach(function (name) {
        var s = tick.services[name], node = cy.getElementById(name);
        var total = state.totals[name] || (state.totals[name] = { requests: 0, errors: 0 });
        total.requests += s.requests;
        total.errors += s.errors;
        var label = name + "\n" + s.instances + " up" + (s.stopped ? " · " + s.stopped +
          " stopped" : "") + "\n" + s.throughput.toFixed(1) + "/s" +
          (s.errors ? " · " + s.errors + " err" : "") + (s.in_flight ? " · q " + s.in_flight : "");
        node.data({ label: label, alive: s.instances, requests: total.requests,
                    errors: total.errors, in_flight: s.in_flight });
        node.toggleClass("erroring", s.errors > 0);
        node.toggleClass("dead", s.instances === 0);
      });
      tick.edges.forEach(function (e) {
        var edge = cy.getElementById(e.source + ">" + e.target + ":" + e.kind);
        edge.data("label", e.throughput ? e.throughput.toFixed(0) + "/s" : "");
        edge.style("width", 1 + Math.min(8, Math.log10(1 + e.throughput) * 2));
        edge.toggleClass("erroring", e.errors > 0);
      });
      var client = cy.getElementById("client");
      client.data("label", "client\n" + tick.requests + " req · " + tick.errors + " err");
    });
    zonesTable(tick);
    var events = document.getElementById("events");
    tick.events.forEach(function (line) { events.appendChild(el("li", line)); });
    document.getElementById("clock").textContent =
      "t = " + tick.t.toFixed(1) + " / " + state.duration + " s";
  }

  function showSummary(frame) {
    state.summary = frame.summary;
    var s = frame.summary, table = document.getElementById("summary-table");
    table.textContent = "";
    row(table, ["instances", s.instances]);
    row(table, ["messages", s.messages]);
    row(table, ["outside requests", s.requests]);
    row(table, ["errors", s.errors]);
    row(table, ["p50 / p99 ms", s.p50_ms + " / " + s.p99_ms]);
    row(table, ["wall seconds", s.wall_seconds]);
    Object.keys(s.services).forEach(function (name) {
      var v = s.services[name];
      row(table, [name, v.requests + " req · " + v.errors + " err · p99 " + v.p99_ms + " ms"],
          v.errors ? "failed" : "");
    });
    document.getElementById("summary").hidden = false;
    status("run over");
  }

  function connect() {
    var speed = new URLSearchParams(location.search).get("speed");
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + base +
      "ws" + (speed ? "?speed=" + encodeURIComponent(speed) : "");
    var ws = new WebSocket(url);
    state.ws = ws;
    ws.onopen = function () { status("running"); };
    ws.onclose = function () { if (!state.summary) status("disconnected"); };
    ws.onmessage = function (message) {
      var frame = JSON.parse(message.data);
      if (frame.type === "graph") { state.duration = frame.duration; drawGraph(frame); }
      else if (frame.type === "tick") showTick(frame);
      else if (frame.type === "summary") showSummary(frame);
      else if (frame.type === "error") { state.error = frame.error; status(frame.error); }
    };
  }

  Array.prototype.forEach.call(document.querySelectorAll("button[data-speed]"), function (b) {
    b.addEventListener("click", function () {
      var speed = b.getAttribute("data-speed");
      if (state.ws && state.ws.readyState === 1) {
        state.ws.send(JSON.stringify({ speed: speed === "max" ? null : Number(speed) }));
      }
    });
  });
  connect();
})();
