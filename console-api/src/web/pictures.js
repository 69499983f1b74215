// The web console's pictures, drawn as SVG from the API's answers: the topology (regions
// and links), charts of the last hour (lag, throughput, RPO) and a message's timeline.
// Served at /pictures.js; no library, no build step.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function svgElement(parent, name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  parent.appendChild(e);
  return e;
}

function svgText(parent, attrs, value) {
  const t = svgElement(parent, "text", attrs);
  t.appendChild(document.createTextNode(value == null ? "" : String(value)));
  return t;
}

function humanBytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

// Bytes seen on this region's links at the last refresh, for throughput.
const lastLinkBytes = new Map();

// Regions on a circle, links as lines: green up, red down, grey unknown; a vpc link dashed
// with a dot at its dialling side; this region filled, a pass-through relay with a dashed
// ring, an unreachable region red. Labels give RTT and, for this region's links, the
// throughput since the last refresh.
function drawTopology(svg, view) {
  svg.replaceChildren();
  const width = svg.clientWidth || 700, height = 320, r = 24;
  svg.setAttribute("height", String(height));
  const n = view.regions.length;
  const cx = width / 2, cy = height / 2, radius = n > 1 ? Math.min(width, height) / 2 - 50 : 0;
  const at = new Map();
  view.regions.forEach((g, i) => {
    const a = (2 * Math.PI * i) / n - Math.PI / 2;
    at.set(g.name, { x: cx + radius * Math.cos(a), y: cy + radius * Math.sin(a) });
  });
  const now = Date.now();
  for (const l of view.links) {
    const [a, b] = l.between, pa = at.get(a), pb = at.get(b);
    if (!pa || !pb) continue;
    const state = l.up == null ? "unknown" : l.up ? "up" : "down";
    const line = svgElement(svg, "line", { x1: pa.x, y1: pa.y, x2: pb.x, y2: pb.y, class: "link link-" + state + (l.kind === "vpc" ? " link-vpc" : "") });
    line.dataset.link = a + "-" + b; line.dataset.state = state;
    svgElement(line, "title").appendChild(document.createTextNode(a + " ↔ " + b + ": " + state + ", " + l.kind + ", cost " + l.cost + ", dialled by " + l.dialer));
    const dial = at.get(l.dialer);
    if (l.kind === "vpc" && dial) {
      const other = dial === pa ? pb : pa;
      svgElement(svg, "circle", { cx: dial.x + (other.x - dial.x) * 0.2, cy: dial.y + (other.y - dial.y) * 0.2, r: 4, class: "dialer" });
    }
    const label = [];
    if (l.rtt_ms != null) label.push(l.rtt_ms.toFixed(1) + " ms");
    if (l.sent_bytes != null) {
      const key = a + "-" + b, total = l.sent_bytes + l.received_bytes, last = lastLinkBytes.get(key);
      if (last && now > last.at) label.push(humanBytes(((total - last.bytes) * 1000) / (now - last.at)) + "/s");
      lastLinkBytes.set(key, { bytes: total, at: now });
    }
    if (l.kind === "vpc") label.push("vpc");
    svgText(svg, { x: (pa.x + pb.x) / 2, y: (pa.y + pb.y) / 2 - 6, "text-anchor": "middle", class: "link-label" }, label.join(" · "));
  }
  for (const g of view.regions) {
    const p = at.get(g.name);
    const node = svgElement(svg, "circle", { cx: p.x, cy: p.y, r, class: "region" + (g.this ? " this" : "") + (g.pass_through ? " relay" : "") + (g.reachable ? "" : " unreachable") });
    node.dataset.region = g.name;
    svgElement(node, "title").appendChild(document.createTextNode(g.name + (g.this ? " (this region)" : "") + (g.pass_through ? ", pass-through relay" : "") + (g.reachable ? "" : ", unreachable")));
    svgText(svg, { x: p.x, y: p.y + 4, "text-anchor": "middle", class: "region-label" + (g.this ? " this" : "") }, g.name);
  }
}

// One line chart: a series per key, time on x, the value on y from 0 to its maximum.
function drawChart(svg, title, series, unit) {
  svg.replaceChildren();
  const width = svg.clientWidth || 340, height = 170, left = 48, right = 8, top = 22, bottom = 20;
  svg.setAttribute("height", String(height));
  svgText(svg, { x: 4, y: 14, class: "chart-title" }, title);
  const points = [...series.values()].flat();
  if (points.length === 0) { svgText(svg, { x: left, y: height / 2, class: "muted" }, "no data yet"); return; }
  const t0 = Math.min(...points.map((p) => p.t)), t1 = Math.max(...points.map((p) => p.t));
  const peak = Math.max(...points.map((p) => p.v));
  const max = peak > 0 ? peak : 1;
  const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1)) * (width - left - right);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  svgElement(svg, "line", { x1: left, y1: top, x2: left, y2: height - bottom, class: "axis" });
  svgElement(svg, "line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis" });
  svgText(svg, { x: left - 4, y: top + 4, "text-anchor": "end", class: "tick" }, (max >= 100 ? max.toFixed(0) : max.toPrecision(2)) + unit);
  svgText(svg, { x: left - 4, y: height - bottom, "text-anchor": "end", class: "tick" }, "0");
  const span = (t1 - t0) / 1000;
  svgText(svg, { x: width - right, y: height - 4, "text-anchor": "end", class: "tick" }, span < 120 ? Math.round(span) + " s" : Math.round(span / 60) + " min");
  let i = 0;
  for (const [key, list] of series) {
    const line = svgElement(svg, "polyline", { points: list.map((p) => x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(" "), class: "series series-" + (i % 6) });
    line.dataset.series = key; line.dataset.points = String(list.length);
    svgText(svg, { x: width - right, y: top + 12 * (i + 1), "text-anchor": "end", class: "legend series-" + (i % 6) }, key);
    i++;
  }
}

// The charts of /api/v1/history: lag in records, bytes and seconds and throughput per task and
// origin (origin → this region), and the RPO per origin.
function drawCharts(container, history) {
  const pairs = (field) => {
    const series = new Map();
    for (const s of history.samples) for (const p of s.pairs) {
      const key = p.task + " " + p.origin + "→";
      if (!series.has(key)) series.set(key, []);
      series.get(key).push({ t: s.at_ms, v: p[field] });
    }
    return series;
  };
  const rpo = new Map();
  for (const s of history.samples) for (const o of s.rpo) {
    if (!rpo.has(o.origin)) rpo.set(o.origin, []);
    rpo.get(o.origin).push({ t: s.at_ms, v: o.records });
  }
  const charts = [
    ["lag-records", "Lag (records)", pairs("lag_records"), ""],
    ["lag-bytes", "Lag (bytes)", pairs("lag_bytes"), " B"],
    ["lag-seconds", "Lag (seconds)", pairs("lag_seconds"), " s"],
    ["throughput", "Throughput (records/s)", pairs("records_per_s"), "/s"],
    ["rpo", "RPO per origin (records)", rpo, ""],
  ];
  for (const [id, title, series, unit] of charts) {
    let svg = container.querySelector("svg[data-chart=" + id + "]");
    if (!svg) { svg = svgElement(container, "svg", { role: "img", "aria-label": title, class: "chart" }); svg.dataset.chart = id; }
    drawChart(svg, title, series, unit);
  }
}

// One lane per region, time left to right; a replication is a line from the record's
// produce time to its arrival in the receiving region's lane.
function drawTimeline(svg, events) {
  svg.replaceChildren();
  const regions = [...new Set(events.map((e) => e.region))];
  const times = events.flatMap((e) => [e.at_ms, Number(e.detail && e.detail.produced_ms) || e.at_ms]);
  const t0 = Math.min(...times), t1 = Math.max(...times), span = Math.max(t1 - t0, 1);
  const width = svg.clientWidth || 1000, left = 90, right = 20, laneH = 46;
  const x = (t) => left + ((t - t0) / span) * (width - left - right);
  const y = (region) => 20 + regions.indexOf(region) * laneH + laneH / 2;
  svg.setAttribute("height", String(30 + regions.length * laneH));
  regions.forEach((region, i) => {
    svgElement(svg, "rect", { class: "lane", x: 0, y: 20 + i * laneH + 4, width, height: laneH - 8 });
    svgText(svg, { x: 6, y: y(region) + 4 }, region);
  });
  svgText(svg, { x: left, y: 14 }, new Date(t0).toISOString());
  svgText(svg, { x: width - right, y: 14, "text-anchor": "end" }, "+" + (t1 - t0) + " ms");
  for (const e of events) {
    const from = e.detail && e.detail.from, produced = Number(e.detail && e.detail.produced_ms);
    if (e.kind === "replicated" && produced) {
      svgElement(svg, "line", { class: "hop", x1: x(produced), y1: y(regions.includes(from) ? from : e.region), x2: x(e.at_ms), y2: y(e.region) });
    }
    const dot = svgElement(svg, "circle", { class: "ev-" + e.kind, cx: x(e.at_ms), cy: y(e.region), r: 6 });
    dot.dataset.kind = e.kind; dot.dataset.region = e.region;
    svgElement(dot, "title").appendChild(document.createTextNode(e.kind + " in " + e.region + " at " + new Date(e.at_ms).toISOString()));
    const at = x(e.at_ms), anchor = at > width - right - 50 ? "end" : at < left + 50 ? "start" : "middle";
    svgText(svg, { x: at, y: y(e.region) - 9, "text-anchor": anchor }, e.kind.replace("_", " "));
  }
}
