// The live map of a setpiece stack: the graph from /_setpiece/graph, its figures from the
// server-sent events of /_setpiece/events, a node's details from /_setpiece/node.
// With auth, open /_setpiece/#token=<JWT with the scope setpiece:observe>.
(function () {
  "use strict";
  var token = new URLSearchParams(location.hash.slice(1)).get("token");
  var headers = token ? { authorization: "Bearer " + token } : {};
  var base = location.pathname.replace(/[^/]*$/, "");
  var state = { previous: null, stats: null, cy: null };
  window.setpieceMap = state; // for tests and the curious

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function rate(group, now) {
    var prev = state.previous, cur = state.stats;
    if (!prev || !cur.groups[group] || !prev.groups[group]) return 0;
    var dt = cur.time - prev.time;
    return dt > 0 ? (cur.groups[group].deliveries - prev.groups[group].deliveries) / dt : 0;
  }

  function label(node) {
    var d = node.data(), s = state.stats, text = d.name;
    if (!s) return text;
    if (d.kind === "handler" && s.groups[d.group]) {
      var g = s.groups[d.group];
      text += "\n" + g.deliveries + " done · " + rate(d.group).toFixed(1) + "/s";
      if (g.failures) text += " · " + g.failures + " failed";
      if (g.lag) text += " · lag " + g.lag;
      if (g.dead_letters) text += " · " + g.dead_letters + " dead";
    } else if (d.kind === "route" && s.routes[d.name]) {
      var r = s.routes[d.name];
      text += "\n" + r.requests + " req" + (r.errors ? " · " + r.errors + " 5xx" : "");
    } else if (d.kind === "service" && s.breakers[d.service]) {
      text += " · breaker " + s.breakers[d.service];
    }
    (s.slos || []).forEach(function (slo) {
      var hit = (d.kind === "handler" && slo.target === d.group) ||
                (d.kind === "route" && slo.target === d.name);
      if (hit) {
        text += "\nSLO " + (slo.budget_remaining * 100).toFixed(1) + "% budget" +
                (slo.firing.length ? " · BURNING" : "");
      }
    });
    return text;
  }

  function refresh() {
    var s = state.stats;
    state.cy.nodes().forEach(function (n) {
      n.data("label", label(n));
      var d = n.data(), g = d.group && s.groups[d.group];
      n.toggleClass("failing", !!(g && (g.failures || g.dead_letters)));
      n.toggleClass("lagging", !!(g && g.lag));
    });
    state.cy.edges().forEach(function (e) {
      var group = e.data("group");
      var g = group && s.groups[group];
      e.data("label", (e.data("rule") || "") + (g ? " " + g.deliveries : ""));
    });
    document.getElementById("status").textContent =
      "live · " + new Date(s.time * 1000).toLocaleTimeString();
  }

  function listen() {
    // fetch, not EventSource: it can send the token as a header
    fetch(base + "events", { headers: headers }).then(function (reply) {
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      var reader = reply.body.getReader(), decoder = new TextDecoder(), buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { setTimeout(listen, 100); return; } // the server ends a stream now and then
          buffer += decoder.decode(chunk.value, { stream: true });
          var at;
          while ((at = buffer.indexOf("\n\n")) >= 0) {
            var message = buffer.slice(0, at);
            buffer = buffer.slice(at + 2);
            var data = message.split("\n").filter(function (l) {
              return l.indexOf("data: ") === 0;
            }).map(function (l) { return l.slice(6); }).join("\n");
            if (data) {
              state.previous = state.stats;
              state.stats = JSON.parse(data);
              refresh();
            }
          }
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      document.getElementById("status").textContent = "disconnected (" + err.message +
        "); retrying";
      setTimeout(listen, 2000);
    });
  }

  function show(node) {
    var panel = document.getElementById("panel");
    fetch(base + "node", { method: "POST", headers: headers,
                           body: JSON.stringify({ id: node.id() }) })
      .then(function (r) { return r.json(); })
      .then(function (info) {
        panel.innerHTML = "";
        panel.appendChild(el("h2", node.data("name")));
        panel.appendChild(el("h3", "recent deliveries"));
        var t = el("table");
        t.id = "recent";
        info.recent.forEach(function (r) {
          var row = el("tr", undefined, r.failed ? "failed" : "");
          [new Date(r.time * 1000).toLocaleTimeString(), r.type, r.ms.toFixed(1) + " ms",
           r.failed ? "failed" : "ok"].forEach(function (c) { row.appendChild(el("td", c)); });
          t.appendChild(row);
        });
        panel.appendChild(info.recent.length ? t : el("p", "none yet"));
        panel.appendChild(el("h3", "dead letters"));
        info.dead_letters.forEach(function (d) {
          panel.appendChild(el("p", d.id + " · " + (d.type || "?") + " · " + d.error, "failed"));
        });
        if (!info.dead_letters.length) panel.appendChild(el("p", "none"));
        panel.appendChild(el("h3", "last traces"));
        info.traces.forEach(function (trace) {
          var total = Math.max.apply(null, trace.spans.map(function (s) {
            return s.offset_ms + s.duration_ms;
          })) || 1;
          var box = el("div", undefined, "waterfall");
          box.appendChild(el("div", trace.trace.slice(0, 16) + "… " + total.toFixed(1) + " ms"));
          trace.spans.forEach(function (s) {
            var bar = el("div", undefined, "bar");
            var span = el("span", undefined, s.error ? "error" : "");
            span.style.left = (100 * s.offset_ms / total) + "%";
            span.style.width = Math.max(0.5, 100 * s.duration_ms / total) + "%";
            bar.appendChild(span);
            bar.appendChild(el("em", s.name + " " + s.duration_ms.toFixed(1) + " ms"));
            box.appendChild(bar);
          });
          panel.appendChild(box);
        });
        if (!info.traces.length) panel.appendChild(el("p", "none (tracing off?)"));
      });
  }

  fetch(base + "graph", { headers: headers }).then(function (r) {
    if (!r.ok) throw new Error("HTTP " + r.status + (r.status === 401 ?
      ": open /_setpiece/#token=<a token with the scope setpiece:observe>" : ""));
    return r.json();
  }).then(function (g) {
    document.getElementById("title").textContent = "setpiece · " + g.stack;
    var elements = g.nodes.map(function (n) {
      var data = { id: n.id, name: n.label, label: n.label, kind: n.kind };
      if (n.parent) data.parent = n.parent;
      if (n.kind === "handler") data.group = n.id.slice("handler:".length);
      if (n.kind === "service") data.service = n.id.slice("service:".length);
      return { data: data, classes: n.kind };
    }).concat(g.edges.map(function (e) {
      return { data: { id: e.id, source: e.source, target: e.target, group: e.group,
                       rule: e.label || "", label: e.label || "" } };
    }));
    state.cy = cytoscape({
      container: document.getElementById("graph"),
      elements: elements,
      layout: { name: "breadthfirst", directed: true, spacingFactor: 1.1, padding: 20 },
      style: [
        { selector: "node", style: { label: "data(label)", "text-wrap": "wrap",
          "font-size": 10, "text-valign": "bottom", "text-margin-y": 4, width: 22,
          height: 22, "background-color": "#5b8def" } },
        { selector: ":parent", style: { "text-valign": "top", "background-color": "#eef3fb",
          "border-color": "#9fb3c8", "border-width": 1, shape: "round-rectangle" } },
        { selector: ".bus", style: { shape: "hexagon", "background-color": "#8e44ad",
          width: 30, height: 30 } },
        { selector: ".stream", style: { shape: "barrel", "background-color": "#16a085" } },
        { selector: ".workflow", style: { shape: "diamond", "background-color": "#d35400" } },
        { selector: ".route", style: { shape: "tag", "background-color": "#2c3e50" } },
        { selector: ".http", style: { shape: "vee", "background-color": "#7f8c8d" } },
        { selector: ".failing", style: { "background-color": "#c0392b" } },
        { selector: ".lagging", style: { "border-color": "#f39c12", "border-width": 3 } },
        { selector: "edge", style: { width: 1.5, "curve-style": "bezier",
          "target-arrow-shape": "triangle", "line-color": "#9fb3c8",
          "target-arrow-color": "#9fb3c8", label: "data(label)", "font-size": 9,
          "text-rotation": "autorotate" } }
      ]
    });
    state.cy.on("tap", "node", function (evt) { show(evt.target); });
    listen();
  }).catch(function (err) {
    document.getElementById("status").textContent = err.message;
  });
})();
