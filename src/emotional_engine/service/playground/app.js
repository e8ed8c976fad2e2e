// The playground: a story (or a session, beat by beat) streamed from this server's /v1 API, with the
// target arc (picked, or drawn on the chart) and the measured one drawn as each scene or beat is done.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  arcs: {},          // name -> [[t, valence], ...]
  drawn: null,       // the arc drawn on the chart: [[t, valence], ...]
  cursor: 2,         // the drawn point the arrow keys move
  targets: [],       // [t, valence] of each scene or beat, once planned or written
  measured: [],      // [t, valence] of each scene or beat, once measured
  session: null,     // the session being played: its id
  beats: [],         // the session's beats as shown: {action, text, target, measured}
  turns: 12,         // the turns the session's arc is spread over: beat i sits at (i + 0.5) / turns
};

// ---- the API -------------------------------------------------------------------------------------

function headers(extra = {}) {
  const key = $("key").value.trim();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function failure(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body.error) detail = body.error.message;
  } catch (e) { /* not JSON: the status says it */ }
  if (response.status === 401) return `The API key was refused: ${detail}`;
  return detail;
}

async function api(path, { method = "GET", body } = {}) {
  const response = await fetch(path, {
    method,
    headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await failure(response));
  return response.status === 204 ? null : response.json();
}

// POST with Accept: text/event-stream; onEvent(name, data) for each event as it arrives
async function stream(path, body, onEvent) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await failure(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;  // a ping
      const parsed = JSON.parse(data.join("\n"));
      if (name === "error") throw new Error(parsed.error ? parsed.error.message : "the stream failed");
      onEvent(name, parsed);
    }
  }
}

// ---- the chart -----------------------------------------------------------------------------------

function targetArc() {
  return $("arc").value === "drawn" ? state.drawn : state.arcs[$("arc").value];
}

function draw() {
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 14;
  const x = (t) => pad + t * (w - 2 * pad);
  const y = (v) => h / 2 - v * (h / 2 - pad);
  g.clearRect(0, 0, w, h);
  g.strokeStyle = "#ddd";
  g.beginPath(); g.moveTo(pad, h / 2); g.lineTo(w - pad, h / 2); g.stroke();
  const line = (points, color, dots) => {
    if (!points || !points.length) return;
    g.strokeStyle = g.fillStyle = color;
    g.lineWidth = 3;
    g.beginPath();
    points.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
    g.stroke();
    if (dots) points.forEach(([t, v]) => { g.beginPath(); g.arc(x(t), y(v), 5, 0, 7); g.fill(); });
  };
  line(targetArc(), "#2f5d8a", $("arc").value === "drawn");
  line(state.targets, "#2f5d8a88", true);
  line(state.measured, "#c0552b", true);
  canvas.dataset.measured = String(state.measured.length);  // what the page shows, for its tests
}

// the arc drawn on the chart: the pointer's path, thinned to at most 20 points with t increasing
function startDrawing() {
  const canvas = $("chart");
  let path = null;
  const point = (event) => {
    const r = canvas.getBoundingClientRect();
    const t = Math.min(1, Math.max(0, (event.clientX - r.left) / r.width));
    const v = Math.min(1, Math.max(-1, 1 - (2 * (event.clientY - r.top)) / r.height));
    return [t, v];
  };
  canvas.addEventListener("pointerdown", (e) => { path = [point(e)]; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => {
    if (!path) return;
    const p = point(e);
    if (p[0] > path[path.length - 1][0] + 0.01) path.push(p);
    state.drawn = path; $("arc").value = "drawn"; draw();
  });
  canvas.addEventListener("pointerup", () => {
    if (path && path.length >= 2) {
      const step = Math.max(1, Math.ceil(path.length / 20));
      const kept = path.filter((_, i) => i % step === 0);
      if (kept[kept.length - 1] !== path[path.length - 1]) kept.push(path[path.length - 1]);
      state.drawn = kept.slice(0, 20).map(([t, v]) => [+t.toFixed(3), +v.toFixed(3)]);
      $("arc").value = "drawn";
    }
    path = null; draw();
  });
  // the keyboard: the drawn arc as 5 points, left/right choose one, up/down move it
  canvas.addEventListener("keydown", (e) => {
    if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key)) return;
    e.preventDefault();
    if ($("arc").value !== "drawn" || !state.drawn || state.drawn.length !== 5) {
      const base = targetArc() || [[0, 0], [1, 0]];
      state.drawn = [0, 0.25, 0.5, 0.75, 1].map((t) => [t, +valenceAt(base, t).toFixed(3)]);
      $("arc").value = "drawn";
    }
    if (e.key === "ArrowLeft") state.cursor = Math.max(0, state.cursor - 1);
    if (e.key === "ArrowRight") state.cursor = Math.min(4, state.cursor + 1);
    const delta = e.key === "ArrowUp" ? 0.1 : e.key === "ArrowDown" ? -0.1 : 0;
    const p = state.drawn[state.cursor];
    p[1] = +Math.min(1, Math.max(-1, p[1] + delta)).toFixed(3);
    draw();
  });
}

function valenceAt(points, t) {
  for (let i = 1; i < points.length; i++) {
    const [t0, v0] = points[i - 1], [t1, v1] = points[i];
    if (t <= t1) return t1 === t0 ? v1 : v0 + ((v1 - v0) * (t - t0)) / (t1 - t0);
  }
  return points[points.length - 1][1];
}

// ---- a story -------------------------------------------------------------------------------------

function request() {
  const arc = $("arc").value === "drawn" ? state.drawn : $("arc").value;
  return {
    premise: $("premise").value, arc, culture: $("culture").value,
    audience: $("audience").value, words: Number($("words").value),
  };
}

async function writeStory() {
  showError("");
  const story = $("story");
  story.replaceChildren();
  state.targets = []; state.measured = [];
  const paragraphs = {};
  let scenes = 1;
  $("write").disabled = true;
  try {
    await stream("/v1/stories", request(), (name, data) => {
      if (name === "plan") {
        scenes = data.scenes.length;
        state.targets = data.scenes.map((s, i) => [(i + 0.5) / scenes, s.target.valence]);
      } else if (name === "text") {
        if (!paragraphs[data.scene]) {
          paragraphs[data.scene] = document.createElement("p");
          story.append(paragraphs[data.scene]);
        }
        paragraphs[data.scene].textContent += data.text;
      } else if (name === "scene_done" && data.measured) {
        state.measured.push([(data.index + 0.5) / scenes, data.measured.valence]);
      } else if (name === "story_done") {
        const cast = $("cast");
        cast.replaceChildren(...data.characters.map((c) => item(`${c.name} (${c.role})`)));
      }
      draw();
    });
  } catch (e) {
    showError(e.message);
  } finally {
    $("write").disabled = false;
  }
}

function item(text) {
  const li = document.createElement("li");
  li.textContent = text;
  return li;
}

// ---- a session -----------------------------------------------------------------------------------

function setPlaying(on) {
  for (const id of ["action", "send", "regenerate", "undo", "swipe", "memory-refresh"]) $(id).disabled = !on;
  if (on) showMemory();
}

function showBeats() {
  const story = $("story");
  story.replaceChildren();
  const at = (i) => (i + 0.5) / state.turns;
  for (const b of state.beats) {
    const action = document.createElement("p");
    action.className = "action";
    action.textContent = `> ${b.action}`;
    const text = document.createElement("p");
    text.textContent = b.text;
    story.append(action, text);
  }
  state.targets = state.beats.flatMap((b, i) => (b.target ? [[at(i), b.target.valence]] : []));
  state.measured = state.beats.flatMap((b, i) => (b.measured ? [[at(i), b.measured.valence]] : []));
  draw();
}

async function startSession() {
  showError("");
  try {
    const { words, ...body } = request();
    const s = await api("/v1/sessions", { method: "POST", body });
    state.session = s.id; state.beats = []; state.turns = s.request.turns || 12;
    $("cast").replaceChildren(...s.characters.map((c) => item(`${c.name} (${c.role})`)));
    showLore(s.request.lorebook || []);
    $("lore-form").hidden = false;
    $("memory").replaceChildren();
    setPlaying(true);
    showBeats();
    $("action").focus();
  } catch (e) {
    showError(e.message);
  }
}

// a turn, a regenerate or a continue: the beat streams into the last place (a new one for a turn)
async function playBeat(path, body, action) {
  showError("");
  setPlaying(false);
  const beat = { action, text: "" };
  if (action === null) state.beats[state.beats.length - 1] = { ...state.beats[state.beats.length - 1], text: "" };
  else state.beats.push(beat);
  const shown = state.beats[state.beats.length - 1];
  try {
    await stream(path, body, (name, data) => {
      if (name === "sentence") { shown.text += data; showBeats(); }
      if (name === "beat") { state.beats[state.beats.length - 1] = data; showBeats(); }
    });
  } catch (e) {
    showError(e.message);
    if (action !== null) state.beats.pop();
    showBeats();
  } finally {
    setPlaying(true);
  }
}

async function swipes() {
  showError("");
  const list = $("swipes");
  list.replaceChildren();
  try {
    const alternatives = await api(`/v1/sessions/${state.session}/swipes`, { method: "POST", body: { n: 2 } });
    alternatives.forEach((b, k) => {
      const li = item(b.text + " ");
      const choose = document.createElement("button");
      choose.textContent = `Choose ${k + 1}`;
      choose.addEventListener("click", async () => {
        try {
          state.beats[state.beats.length - 1] = await api(`/v1/sessions/${state.session}/swipes/${k}`, { method: "POST" });
          list.replaceChildren();
          showBeats();
        } catch (e) { showError(e.message); }
      });
      li.append(choose);
      list.append(li);
    });
  } catch (e) {
    showError(e.message);
  }
}

function showLore(entries) {
  $("lore").replaceChildren(...entries.map((e) => item(`${e.keys.join(", ") || "always"}: ${e.content}`)));
}

async function addLore(event) {
  event.preventDefault();
  showError("");
  const content = $("lore-content").value.trim();
  if (!content) return showError("The lorebook entry is empty: write what the story should know.");
  const keys = $("lore-keys").value.split(",").map((k) => k.trim()).filter(Boolean);
  try {
    await api(`/v1/sessions/${state.session}/lorebook`, { method: "POST", body: { keys, content, constant: !keys.length } });
    showLore(await api(`/v1/sessions/${state.session}/lorebook`));
    $("lore-keys").value = ""; $("lore-content").value = "";
  } catch (e) { showError(e.message); }
}

// the story memory, fetched when the panel is open (the server waits for the last beat's summary)
async function showMemory() {
  if (!state.session || !$("memory-panel").open) return;
  try {
    const facts = await api(`/v1/sessions/${state.session}/memory`);
    $("memory").replaceChildren(...facts.map(factItem));
  } catch (e) { showError(e.message); }
}

function factItem(fact) {
  const path = `/v1/sessions/${state.session}/memory/${fact.index}`;
  const li = document.createElement("li");
  const text = document.createElement("input");
  text.value = fact.text;
  text.setAttribute("aria-label", `fact ${fact.index + 1}, from beat ${fact.scene + 1} (${fact.kind})`);
  const act = (label, run) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.setAttribute("aria-label", `${label} fact ${fact.index + 1}`);
    b.addEventListener("click", async () => {
      showError("");
      try { await run(); await showMemory(); } catch (e) { showError(e.message); }
    });
    return b;
  };
  li.append(
    text,
    act("Save", () => api(path, { method: "PUT", body: { text: text.value } })),
    act("Forget", () => api(path, { method: "DELETE" })),
  );
  return li;
}

// ---- the page ------------------------------------------------------------------------------------

function setMode(play) {
  $("mode-story").setAttribute("aria-pressed", String(!play));
  $("mode-play").setAttribute("aria-pressed", String(play));
  $("write").hidden = play;
  $("words").disabled = play;
  $("play-controls").hidden = !play;
}

async function load() {
  $("key").value = localStorage.getItem("ee-key") || "";
  $("key").addEventListener("change", () => localStorage.setItem("ee-key", $("key").value.trim()));
  try {
    const [arcs, cultures] = await Promise.all([api("/v1/arcs"), api("/v1/cultures")]);
    for (const a of arcs) {
      state.arcs[a.name] = a.points;
      $("arc").append(new Option(a.name.replace(/_/g, " "), a.name));
    }
    $("arc").append(new Option("drawn on the chart", "drawn"));
    for (const c of cultures) $("culture").append(new Option(`${c.name} (${c.tag})`, c.tag, false, c.tag === "en-GB"));
  } catch (e) {
    showError(e.message);
  }
  $("arc").addEventListener("change", draw);
  $("write").addEventListener("click", writeStory);
  $("mode-story").addEventListener("click", () => setMode(false));
  $("mode-play").addEventListener("click", () => setMode(true));
  $("start").addEventListener("click", startSession);
  $("action-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const action = $("action").value.trim();
    if (!action) return;
    $("action").value = "";
    playBeat(`/v1/sessions/${state.session}/turns`, { action }, action);
  });
  $("regenerate").addEventListener("click", () => playBeat(`/v1/sessions/${state.session}/regenerate`, undefined, null));
  $("undo").addEventListener("click", async () => {
    try {
      const s = await api(`/v1/sessions/${state.session}/undo`, { method: "POST" });
      state.beats = s.beats; showBeats();
    } catch (e) { showError(e.message); }
  });
  $("swipe").addEventListener("click", swipes);
  $("lore-form").addEventListener("submit", addLore);
  $("memory-panel").addEventListener("toggle", showMemory);
  $("memory-refresh").addEventListener("click", showMemory);
  startDrawing();
  draw();
}

load();
