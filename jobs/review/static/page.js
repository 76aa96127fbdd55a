// facevid review: one task at a time; the server holds the truth (leases, verdicts in the lake).
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));
let task = null;
let busy = false;
let pingTimer = null;
let statusTimer = null;

function el(tag, attrs = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const kid of kids) node.append(kid);
  return node;
}

function show(message, error = false) {
  const box = $("#status");
  box.textContent = message;
  box.className = "show" + (error ? " error" : "");
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { box.className = ""; }, error ? 6000 : 2500);
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({error: res.statusText}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

const fmt = (v) => v === null || v === undefined ? "none" : Array.isArray(v) ? (v.length ? v.join(", ") : "none") : String(v);

function renderHeader(data) {
  $("#who").textContent = "reviewer " + data.reviewer;
  const f = data.filter;
  $("#filter").textContent = [f.kind, f.batch].filter(Boolean).join(" · ") || "all tasks";
  $("#bar").max = Math.max(1, data.progress.total);
  $("#bar").value = data.progress.done;
  $("#count").textContent = `${data.progress.done} / ${data.progress.total} done`;
}

function renderField(field, i) {
  const modelList = Array.isArray(field.model_value) ? field.model_value : [field.model_value];
  const known = modelList.every((v) => v === null || field.options.includes(v));
  const box = el("fieldset", {class: "field" + (field.restoration ? " restoration" : ""), "data-name": field.name});
  const legend = el("legend", {}, el("span", {class: "n", text: String(i + 1)}), field.name,
    el("span", {class: "model", text: field.restoration ? (field.model_value ? "eye screen suggests: " + field.model_value : "")
      : "model: " + fmt(field.model_value) + (known ? "" : " (not in the vocabulary)")}),
    el("span", {class: "badge", text: "corrected"}));
  box.append(legend);
  if (field.options.length > 20) {
    box.append(el("input", {type: "search", class: "filter", placeholder: `filter ${field.options.length} options  (/)`}));
  }
  const opts = el("div", {class: "options"});
  const type = field.many ? "checkbox" : "radio";
  const choices = field.options.slice();
  if (!field.many && !field.restoration) choices.push(null);
  for (const option of choices) {
    const input = el("input", {type, name: field.name, value: option === null ? "" : option});
    const label = el("label", {class: modelList.includes(option) ? "is-model" : ""}, input, option === null ? "none of these" : option);
    opts.append(label);
  }
  box.append(opts);
  return box;
}

function render(data) {
  renderHeader(data);
  if (!pingTimer) pingTimer = setInterval(ping, data.ping_s * 1000);  // keeps this task's lease
  task = data.task;
  $("#work").hidden = !task;
  $("#work").dataset.task = task ? task.task_id : "";
  $("#end").hidden = !!task;
  if (!task) {
    $("#endtext").textContent = `${data.progress.done} of ${data.progress.total} tasks in this view are done.` +
      (data.skipped ? ` You skipped ${data.skipped}.` : "");
    $("#unskip").hidden = !data.skipped;
    return;
  }
  const meta = $("#meta");
  meta.replaceChildren(el("span", {class: "chip kind", text: task.kind}),
    el("span", {}, "clip ", el("b", {text: task.clip_id})),
    el("span", {text: "source " + (task.source || "?")}),
    el("span", {text: "identity " + (task.identity_id || "?")}),
    el("span", {text: "batch " + (task.batch_id || "?") + (task.in_sample ? " · in sample" : "")}),
    ...(task.flags || []).map((f) => el("span", {class: "chip flag", text: f})));
  $("#frames").replaceChildren(...task.frames.map((f) =>
    el("figure", {}, el("a", {href: f.url, target: "_blank", title: "full size"}, el("img", {src: f.url, alt: f.label})),
      el("figcaption", {text: f.label}))));
  $("#fields").replaceChildren(...task.fields.map(renderField));
  setValues(modelValues());
  window.scrollTo(0, 0);
}

function modelValues() {
  const out = {};
  for (const f of task.fields) out[f.name] = f.restoration ? null : f.model_value;  // a restoration is always decided
  return out;
}

function setValues(values) {
  for (const f of task.fields) {
    const want = values[f.name];
    const set = new Set(Array.isArray(want) ? want : [want === null || want === undefined ? "" : want]);
    for (const input of $$(`fieldset[data-name="${CSS.escape(f.name)}"] input[name]`)) input.checked = set.has(input.value);
  }
  markChanged();
}

function values() {
  const out = {};
  for (const f of task.fields) {
    const checked = $$(`fieldset[data-name="${CSS.escape(f.name)}"] input[name]:checked`).map((i) => i.value);
    out[f.name] = f.many ? checked : (checked.length && checked[0] !== "" ? checked[0] : null);
  }
  return out;
}

function markChanged() {
  if (!task) return;
  const now = values();
  for (const f of task.fields) {
    const model = f.many ? (f.model_value || []).slice().sort() : f.model_value ?? null;
    const mine = f.many ? now[f.name].slice().sort() : now[f.name];
    const changed = !f.restoration && JSON.stringify(model) !== JSON.stringify(mine);
    $(`fieldset[data-name="${CSS.escape(f.name)}"]`).classList.toggle("changed", changed);
  }
}

async function submit(vals) {
  if (busy || !task) return;
  const open = task.fields.filter((f) => f.restoration && vals[f.name] === null);
  if (open.length) { show("choose accept or reject for " + open.map((f) => f.name).join(", "), true); return; }
  busy = true;
  $$("#actions button").forEach((b) => { b.disabled = true; });
  try {
    const res = await api("/api/submit", {task_id: task.task_id, values: vals});
    const counts = {};
    for (const v of Object.values(res.verdicts)) counts[v] = (counts[v] || 0) + 1;
    show("saved: " + Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", "));
    await load();
  } catch (err) {
    show(err.message, true);
  } finally {
    busy = false;
    $$("#actions button").forEach((b) => { b.disabled = false; });
  }
}

function acceptAll() {
  const vals = modelValues();
  for (const f of task.fields) if (f.restoration) vals[f.name] = "accept";
  setValues(vals);
  return submit(values());
}

async function skip() {
  if (busy || !task) return;
  busy = true;
  try {
    await api("/api/skip", {task_id: task.task_id});
    show("skipped");
    await load();
  } catch (err) { show(err.message, true); } finally { busy = false; }
}

async function load() {
  try { render(await api("/api/task")); } catch (err) { show(err.message, true); }
}

async function ping() {
  if (!task || busy) return;
  try {
    const res = await api("/api/ping", {task_id: task.task_id});
    if (!res.held) { show("this task's lease was lost: loading another", true); await load(); }
  } catch (err) { show(err.message, true); }
}

function onFilter(input) {
  const q = input.value.trim().toLowerCase();
  for (const label of $$(".options label", input.closest("fieldset"))) {
    label.hidden = !!q && !label.textContent.toLowerCase().includes(q) && !$("input", label).checked;
  }
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t.classList && t.classList.contains("filter")) {
    if (e.key === "Escape") { t.value = ""; onFilter(t); t.blur(); e.preventDefault(); }
    if (e.key === "Enter") {
      e.preventDefault();
      const q = t.value.trim().toLowerCase();
      const labels = $$(".options label", t.closest("fieldset"));
      const exact = labels.filter((l) => l.textContent.toLowerCase() === q);
      const hits = exact.length ? exact : labels.filter((l) => !l.hidden && l.textContent.toLowerCase().includes(q));
      if (q && hits.length === 1) { $("input", hits[0]).click(); t.select(); } else show(`${hits.length} options match`);
    }
    return;
  }
  if (t.tagName === "BUTTON" && (e.key === "Enter" || e.key === " ")) return;
  if (!task) { if (e.key === "u") unskip(); return; }
  if (e.key === "a") { e.preventDefault(); acceptAll(); }
  else if (e.key === "Enter") { e.preventDefault(); submit(values()); }
  else if (e.key === "s") { e.preventDefault(); skip(); }
  else if (e.key === "r") { setValues(modelValues()); show("reset to the model's values"); }
  else if (e.key === "x") {
    const rest = task.fields.filter((f) => f.restoration);
    if (rest.length) { const vals = values(); rest.forEach((f) => { vals[f.name] = "reject"; }); setValues(vals); submit(vals); }
  } else if (/^[1-9]$/.test(e.key)) {
    const box = $$("#fields fieldset")[Number(e.key) - 1];
    if (box) { e.preventDefault(); ($(".filter", box) || $("input:checked", box) || $("input", box)).focus(); }
  } else if (e.key === "/") {
    const box = (t.closest && t.closest("fieldset")) || $$("#fields fieldset").find((b) => $(".filter", b));
    const input = box && $(".filter", box);
    if (input) { e.preventDefault(); input.focus(); }
  }
}

async function unskip() {
  await api("/api/unskip", {}).catch((err) => show(err.message, true));
  await load();
}

document.addEventListener("keydown", onKey);
$("#form").addEventListener("submit", (e) => { e.preventDefault(); submit(values()); });
$("#form").addEventListener("change", markChanged);
$("#form").addEventListener("input", (e) => { if (e.target.classList.contains("filter")) onFilter(e.target); });
$("#accept").addEventListener("click", acceptAll);
$("#skip").addEventListener("click", skip);
$("#reset").addEventListener("click", () => setValues(modelValues()));
$("#unskip").addEventListener("click", unskip);
load();
