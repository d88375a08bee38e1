// Sluice dashboard: renders the views the server pushes (Server-Sent Events, one `view`
// event per change the server's watches see) and sends the controls. Plain DOM, no framework.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CONTROL_HEADER = "X-Sluice-Dashboard";

const WHAT = {
  promote: "Lift the pause, or go to the next step.",
  abort: "Move all traffic back to stable now; the new revision is scaled down after its delay.",
  retry: "Start the aborted release again from its first step.",
  pause: "Hold the release where it stands.",
  resume: "Lift the pause made with pause.",
};

const PHASE_COLOURS = {
  Successful: "#15803d",
  Failed: "#b91c1c",
  Error: "#b91c1c",
  Inconclusive: "#b45309",
  Running: "#2563eb",
  Pending: "#94a3b8",
};

// el("div", {class: "x"}, "text", child, ...): text is always set as text, never as HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(node, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function phaseBadge(phase) {
  return el("span", { class: `phase phase-${phase}` }, phase);
}

function stepText(step) {
  return step ? `${step.index} of ${step.total}` : "–";
}

function weightCell(w) {
  if (!w) return el("span", { class: "muted" }, "–");
  return el(
    "div",
    {},
    el("span", { class: "weight" }, `canary ${w.canary}% · stable ${w.stable}%`),
    el(
      "div",
      { class: "weightbar", title: `canary ${w.canary}%, stable ${w.stable}%` },
      el("div", { class: "c", style: `width:${w.canary}%` }),
      el("div", { class: "s", style: `width:${w.stable}%` }),
    ),
  );
}

function imagesCell(images) {
  return el(
    "div",
    { class: "images" },
    images.map((i) => el("div", {}, el("span", { class: `role role-${i.role}` }, i.role), el("code", {}, i.image))),
  );
}

// A small line of the latest analysis run's values.
function sparkline(a) {
  if (!a || a.values.length === 0) return el("span", { class: "muted" }, "–");
  const w = 120, h = 28, pad = 3;
  const vs = a.values;
  let lo = Math.min(...vs), hi = Math.max(...vs);
  if (hi === lo) { lo -= 1; hi += 1; }
  const x = (i) => pad + (vs.length === 1 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (vs.length - 1));
  const y = (v) => h - pad - ((v - lo) * (h - 2 * pad)) / (hi - lo);
  const pts = vs.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const colour = PHASE_COLOURS[a.phase] || "#2563eb";
  return svg(
    "svg",
    { class: "spark", width: w, height: h, viewBox: `0 0 ${w} ${h}`, "data-values": vs.join(",") },
    svg("title", {}, `${a.metric} (${a.run}, ${a.phase}): ${vs.join(", ")}`),
    svg("polyline", { points: pts, fill: "none", stroke: colour, "stroke-width": 1.6 }),
    svg("circle", { cx: x(vs.length - 1), cy: y(vs[vs.length - 1]), r: 2.4, fill: colour }),
  );
}

// One metric's measurements over time, each point coloured by its verdict.
function chart(m) {
  const pts = m.points.filter((p) => p.value !== null && p.value !== undefined);
  const w = 560, h = 150, left = 48, right = 12, top = 10, bottom = 24;
  const root = svg("svg", { class: "chart", width: w, height: h, viewBox: `0 0 ${w} ${h}` });
  root.append(svg("rect", { x: left, y: top, width: w - left - right, height: h - top - bottom, fill: "#fafbfc", stroke: "#dde2e7" }));
  if (pts.length === 0) {
    root.append(svg("text", { x: w / 2, y: h / 2, "text-anchor": "middle", fill: "#66717c", "font-size": 12 }, "no numeric measurements yet"));
    return root;
  }
  const vs = pts.map((p) => p.value);
  let lo = Math.min(...vs), hi = Math.max(...vs);
  const span = hi - lo || Math.abs(hi) * 0.1 || 1;
  lo -= span * 0.15; hi += span * 0.15;
  const ts = pts.map((p, i) => (p.at === null || p.at === undefined ? i : p.at));
  let t0 = Math.min(...ts), t1 = Math.max(...ts);
  if (t1 === t0) { t0 -= 1; t1 += 1; }
  const x = (t) => left + ((t - t0) * (w - left - right)) / (t1 - t0);
  const y = (v) => top + (h - top - bottom) - ((v - lo) * (h - top - bottom)) / (hi - lo);
  for (const v of [lo + span * 0.15, hi - span * 0.15]) {
    root.append(svg("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), stroke: "#e5e7eb" }));
    root.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#66717c" }, fmt(v)));
  }
  if (pts[0].at) {
    root.append(svg("text", { x: left, y: h - 6, "font-size": 11, fill: "#66717c" }, clock(pts[0].at)));
    root.append(svg("text", { x: w - right, y: h - 6, "text-anchor": "end", "font-size": 11, fill: "#66717c" }, clock(pts[pts.length - 1].at)));
  }
  root.append(svg("polyline", {
    points: pts.map((p, i) => `${x(ts[i]).toFixed(1)},${y(p.value).toFixed(1)}`).join(" "),
    fill: "none", stroke: "#94a3b8", "stroke-width": 1.5,
  }));
  pts.forEach((p, i) => {
    root.append(svg("circle", { cx: x(ts[i]), cy: y(p.value), r: 4, fill: PHASE_COLOURS[p.phase] || "#2563eb" },
      svg("title", {}, `${p.raw} — ${p.phase}${p.at ? " at " + new Date(p.at).toLocaleTimeString() : ""}`)));
  });
  return root;
}

function fmt(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Number(v.toPrecision(3)).toString();
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString();
}

function when(s) {
  if (!s) return "–";
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString();
}

function showProblems(problems) {
  const box = document.getElementById("problems");
  box.replaceChildren(...(problems || []).map((p) => el("div", {}, p)));
  box.hidden = !problems || problems.length === 0;
}

// --- The list page ---------------------------------------------------------------------

function renderList(v) {
  document.getElementById("scope").textContent = v.scope;
  showProblems(v.problems);
  const app = document.getElementById("app");
  if (v.rollouts.length === 0) {
    const text = v.loading ? `Reading the Rollouts in ${v.scope}…` : `No Rollouts in ${v.scope}.`;
    app.replaceChildren(el("h1", {}, "Rollouts"), el("p", { class: "muted", id: v.loading ? "loading" : "empty" }, text));
    return;
  }
  const rows = v.rollouts.map((r) =>
    el(
      "tr",
      { "data-rollout": `${r.namespace}/${r.name}` },
      el("td", { class: "c-namespace" }, r.namespace),
      el("td", { class: "c-name" }, el("a", { href: `/rollouts/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}` }, r.name)),
      el("td", { class: "c-strategy" }, r.strategy),
      el("td", { class: "c-phase" }, phaseBadge(r.phase), r.aborted ? el("span", { class: "muted" }, " aborted") : null,
        r.exercise ? el("span", { class: "exercise-badge", title: r.exercise }, "exercise") : null,
        r.malformed ? el("div", { class: "failing" }, r.malformed) : null),
      el("td", { class: "c-step" }, stepText(r.step)),
      el("td", { class: "c-weight" }, weightCell(r.weights)),
      el("td", { class: "c-images" }, imagesCell(r.images)),
      el("td", { class: "c-analysis" }, sparkline(r.analysis)),
    ),
  );
  app.replaceChildren(
    el("h1", {}, "Rollouts"),
    el("p", { class: "muted" }, `${v.rollouts.length} in ${v.scope}, updated live from the API server's watches.`),
    el(
      "table",
      { id: "rollouts" },
      el("thead", {}, el("tr", {}, ["Namespace", "Name", "Strategy", "Phase", "Step", "Weights", "Images", "Analysis"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows),
    ),
  );
}

// --- One Rollout's page ----------------------------------------------------------------

let lastResult = null;
let current = null;

// The page in three parts; the controls part is rebuilt only when the controls or the last
// result change, so a re-render from a watch never swaps a button out under a click.
const page = { head: null, controls: null, body: null, controlsKey: null };

function renderRollout(v) {
  current = v;
  const r = v.row;
  document.getElementById("scope").textContent = `${r.namespace}/${r.name}`;
  showProblems(v.problems);
  const app = document.getElementById("app");
  if (!v.found) {
    page.head = null;
    app.replaceChildren(el("p", {}, el("a", { href: "/" }, "← all Rollouts")),
      el("h1", {}, r.name), v.loading
        ? el("p", { class: "muted", id: "loading" }, `Reading Rollout ${r.name} in namespace ${r.namespace}…`)
        : el("p", { class: "muted", id: "not-found" }, `No Rollout ${r.name} in namespace ${r.namespace} (yet, or any more).`));
    return;
  }
  if (!page.head) {
    page.head = el("div", {});
    page.controls = el("div", { id: "controls" });
    page.body = el("div", {});
    page.controlsKey = null;
    app.replaceChildren(page.head, page.controls, page.body);
  }
  page.head.replaceChildren(...[
    el("p", {}, el("a", { href: "/" }, "← all Rollouts")),
    el("h1", { id: "name" }, r.name, " ", phaseBadge(r.phase)),
    el("div", { class: "muted" }, `namespace ${r.namespace} · ${r.strategy}`, r.aborted ? " · aborted" : ""),
    r.exercise ? el("p", { id: "exercise", class: "exercise" }, `Exercise: ${r.exercise}`) : null,
    r.message ? el("p", { id: "message" }, r.message) : null,
    r.malformed ? el("p", { class: "failing" }, `Cannot read this Rollout: ${r.malformed}`) : null,
    el(
      "div",
      { class: "cards" },
      card("Step", el("span", { id: "step" }, stepText(r.step))),
      card("Canary weight", el("span", { id: "canary-weight" }, r.weights ? `${r.weights.canary}%` : "–")),
      card("Stable weight", el("span", { id: "stable-weight" }, r.weights ? `${r.weights.stable}%` : "–")),
      card("Images", imagesCell(r.images), "wide"),
    ),
  ].filter(Boolean));
  const key = JSON.stringify([r.namespace, r.name, v.controls, lastResult]);
  if (key !== page.controlsKey) {
    page.controlsKey = key;
    page.controls.replaceChildren(controls(v));
  }
  const parts = [];
  if (v.steps.length > 0) {
    parts.push(el("h2", {}, "Steps"), el("ol", { class: "steps", id: "steps" },
      v.steps.map((s) => el("li", { class: s.state, "data-index": s.index }, `${s.index}: ${s.text}`))));
  }
  if (v.pauses.length > 0) {
    parts.push(el("h2", {}, "Paused"), el("ul", { id: "pauses" }, v.pauses.map((p) => el("li", {}, p))));
  }
  parts.push(el("h2", {}, "Revisions"), revisions(v.revisions));
  parts.push(el("h2", {}, "Analysis"), runs(v.runs));
  if (v.conditions.length > 0) {
    parts.push(el("h2", {}, "Conditions"), el("table", { class: "conditions" },
      el("thead", {}, el("tr", {}, ["Type", "Status", "Reason", "Message"].map((h) => el("th", {}, h)))),
      el("tbody", {}, v.conditions.map((c) => el("tr", {}, el("td", {}, c.kind), el("td", {}, c.status), el("td", {}, c.reason), el("td", {}, c.message))))));
  }
  parts.push(el("h2", {}, "Events"), events(v.events));
  page.body.replaceChildren(...parts);
}

function card(label, value, wide) {
  return el("div", { class: wide ? "card wide" : "card" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
}

function controls(v) {
  const box = el("div", {});
  const buttons = v.controls.map((c) =>
    el("button", {
      type: "button",
      id: `btn-${c.name}`,
      class: c.applies ? "" : "na",
      title: c.applies ? WHAT[c.name] : c.whyNot,
      "data-applies": c.applies,
      onclick: () => ask(v.row, c),
    }, c.name));
  box.append(el("div", { class: "controls" }, buttons));
  if (lastResult) {
    box.append(el("div", { id: "control-result", class: lastResult.ok ? "ok" : "err" }, lastResult.message));
  }
  return box;
}

function revisions(list) {
  if (list.length === 0) return el("p", { class: "muted" }, "No ReplicaSets yet.");
  return el("table", { id: "revisions" },
    el("thead", {}, el("tr", {}, ["Revision", "Role", "Images", "Replicas", "Ready", "Available", "Created"].map((h) => el("th", {}, h)))),
    el("tbody", {}, list.map((rs) => el("tr", { "data-hash": rs.hash },
      el("td", {}, el("code", {}, rs.hash)),
      el("td", {}, el("span", { class: `role role-${rs.role}` }, rs.role)),
      el("td", {}, rs.images.map((i) => el("div", {}, el("code", {}, i)))),
      el("td", {}, rs.replicas), el("td", {}, rs.ready), el("td", {}, rs.available),
      el("td", {}, when(rs.created))))));
}

function runs(list) {
  if (list.length === 0) return el("p", { class: "muted" }, "No AnalysisRuns.");
  return el("div", { id: "runs" }, list.map((run) =>
    el("div", { class: "run", "data-run": run.name },
      el("div", { class: "run-head" },
        el("strong", {}, run.name), phaseBadge(run.phase),
        el("span", { class: "muted" }, [run.kind, run.revision && `revision ${run.revision}`, run.started && `started ${when(run.started)}`].filter(Boolean).join(" · ")),
      ),
      run.message ? el("div", { class: run.phase === "Successful" ? "muted" : "failing" }, run.message) : null,
      run.malformed ? el("div", { class: "failing" }, run.malformed) : null,
      run.metrics.map((m) =>
        el("div", { class: "metric", "data-metric": m.name },
          el("div", { class: "metric-head" },
            el("strong", {}, m.name), phaseBadge(m.phase),
            m.successCondition ? el("span", {}, "success: ", el("code", {}, m.successCondition)) : null,
            m.failureCondition ? el("span", {}, "failure: ", el("code", {}, m.failureCondition)) : null,
            el("span", { class: "muted" }, `${m.points.length} measurement${m.points.length === 1 ? "" : "s"}`),
          ),
          chart(m),
          m.failing ? el("div", { class: "failing" }, m.failing) : null,
          m.message ? el("div", { class: "failing" }, m.message) : null,
        )),
    )));
}

function events(list) {
  if (list.length === 0) return el("p", { class: "muted" }, "No Events.");
  return el("table", { id: "events" },
    el("thead", {}, el("tr", {}, ["Time", "Type", "Reason", "Object", "Message", "Count"].map((h) => el("th", {}, h)))),
    el("tbody", {}, list.map((e) => el("tr", { class: `ev-${e.kind}` },
      el("td", {}, when(e.at)), el("td", { class: "kind" }, e.kind), el("td", {}, e.reason),
      el("td", {}, el("code", {}, e.object)), el("td", {}, e.note), el("td", {}, e.count)))));
}

// --- Controls: an in-page confirm, then the request ----------------------------------

function ask(row, control) {
  const box = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = `${control.name[0].toUpperCase()}${control.name.slice(1)} ${row.name}?`;
  document.getElementById("confirm-text").textContent = WHAT[control.name];
  document.getElementById("confirm-hint").textContent = control.applies ? "" : `As it is now: ${control.whyNot}`;
  const yes = document.getElementById("confirm-yes");
  const no = document.getElementById("confirm-no");
  yes.textContent = control.name;
  const close = () => {
    box.hidden = true;
    yes.onclick = null;
    no.onclick = null;
  };
  no.onclick = close;
  yes.onclick = async () => {
    close();
    await send(row, control.name);
  };
  box.hidden = false;
  yes.focus();
}

async function send(row, name) {
  let result;
  try {
    const res = await fetch(`/api/rollouts/${encodeURIComponent(row.namespace)}/${encodeURIComponent(row.name)}/${name}`, {
      method: "POST",
      headers: { [CONTROL_HEADER]: "1" },
    });
    const body = await res.json().catch(() => ({ ok: false, message: `HTTP ${res.status}` }));
    result = { ok: res.ok && body.ok, message: body.message };
  } catch (e) {
    result = { ok: false, message: `the dashboard did not answer: ${e}` };
  }
  lastResult = result;
  if (current) renderRollout(current);
}

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") document.getElementById("confirm-no").click();
});

// --- Routing and the live stream -------------------------------------------------------

function start() {
  const m = location.pathname.match(/^\/rollouts\/([^/]+)\/([^/]+)\/?$/);
  const url = m ? `/api/stream/${m[1]}/${m[2]}` : "/api/stream";
  const render = m ? renderRollout : renderList;
  const live = document.getElementById("live");
  const source = new EventSource(url);
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; live.className = "live off"; });
  source.addEventListener("view", (e) => {
    render(JSON.parse(e.data));
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  });
}

start();
