// The web page's logic: plain JS, no build step. It talks only to the public API, as the SDK does:
//   GET /v1/models                 what is served (shown in the header)
//   POST /classify  files, top_k, tta   the top-5 bars
//   POST /similar   file or id, k       the nearest gallery images
//   GET /gallery/{id}/thumbnail         their pictures (the answer's thumbnail_url)
// A query by gallery id gets no predictions from /similar (the service keeps only the item's fc7
// vector and thumbnail), so for one the page classifies the thumbnail and says so.
"use strict";

const TOP_K = 5;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message, requestId = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId; // the server's X-Request-ID, which its log lines carry
  }
}

// --- talking to the service ---------------------------------------------------------------------

async function errorFrom(response) {
  // the service answers {"error": {"code", "message"}}; anything else (a proxy's page) is shown as is
  const requestId = response.headers.get("X-Request-ID");
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") {
      return new ApiError(response.status, body.error.code, body.error.message, requestId);
    }
  } catch (_) {
    // not JSON
  }
  return new ApiError(response.status, "http_error", `${response.status} ${response.statusText}`.trim(), requestId);
}

async function send(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new ApiError(0, "connection_error", `could not reach the service (${err.message})`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/** The JSON answer and the round trip in ms (request sent to answer read). */
async function callApi(path, form) {
  const started = performance.now();
  const response = await send(path, form ? { method: "POST", body: form } : {});
  const data = await response.json();
  return { data, roundTripMs: performance.now() - started };
}

function classify(blob, filename) {
  const form = new FormData();
  form.append("files", blob, filename);
  form.append("top_k", String(TOP_K));
  form.append("tta", $("tta").value);
  return callApi("/classify", form);
}

function similar(field, value, filename) {
  const form = new FormData();
  if (filename === undefined) form.append(field, value);
  else form.append(field, value, filename);
  form.append("k", $("k").value);
  return callApi("/similar", form);
}

// --- the page's state -----------------------------------------------------------------------------

let generation = 0; // the latest query; answers to older ones are dropped
let lastQuery = null; // re-run when an option changes
let previewUrl = null;

function setState(state, message) {
  document.body.dataset.state = state; // idle | busy | done | error (also what tests wait for)
  $("status").textContent = message;
}

function showError(err) {
  $("error-title").textContent = err.status ? "The service refused the request" : "No answer from the service";
  $("error-message").textContent = err.message;
  $("error-status").textContent = err.status ? String(err.status) : "none (no answer)";
  $("error-code").textContent = err.code;
  $("error-request").textContent = err.requestId || "";
  $("error-request-detail").hidden = !err.requestId;
  $("error").hidden = false;
  $("results").hidden = true;
  setState("error", "");
}

function setPreview(src) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = src.startsWith("blob:") ? src : null;
  $("query-image").src = src;
}

/** Both answers; if either request failed, the first one's error (not whichever failed sooner). */
async function both(first, second) {
  const settled = await Promise.allSettled([first, second]);
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((s) => s.value);
}

async function runQuery(query) {
  lastQuery = query;
  const mine = ++generation;
  $("error").hidden = true;
  setState("busy", query.busyMessage);
  try {
    const answers = await query.run();
    if (mine !== generation) return;
    query.render(answers);
    $("results").dataset.query = query.key;
    $("results").hidden = false;
    setState("done", query.doneMessage);
  } catch (err) {
    if (mine !== generation) return;
    if (!(err instanceof ApiError)) throw err;
    showError(err);
  }
}

// --- queries: an uploaded file, or a gallery item -------------------------------------------------

function fileQuery(file) {
  return {
    key: `file:${file.name}`,
    busyMessage: `Classifying ${file.name} and searching the gallery…`,
    doneMessage: `Results for ${file.name}.`,
    run: () => both(classify(file, file.name), similar("file", file, file.name)),
    render([classified, found]) {
      setPreview(URL.createObjectURL(file));
      $("query-image").alt = `The query image, ${file.name}`;
      $("query-image").classList.remove("from-thumbnail");
      $("query-caption").textContent = file.name;
      renderPredictions(classified, null, null);
      renderNeighbors(found);
    },
  };
}

function galleryQuery(neighbor) {
  const { id, thumbnail_url: thumbnailUrl } = neighbor;
  const thumbnailName = `gallery-${id}-thumbnail.jpg`;
  return {
    key: `id:${id}`,
    busyMessage: `Searching from gallery item #${id}…`,
    doneMessage: `Results for gallery item #${id}.`,
    async run() {
      const classifyThumbnail = send(thumbnailUrl)
        .then((response) => response.blob())
        .then((blob) => classify(blob, thumbnailName));
      return both(classifyThumbnail, similar("id", String(id)));
    },
    render([classified, found]) {
      const { label } = found.data.query;
      setPreview(thumbnailUrl);
      $("query-image").alt = `Gallery item ${id}, ${label}`;
      $("query-image").classList.add("from-thumbnail");
      $("query-caption").textContent = `Gallery item #${id}: ${label}` + (neighbor.source ? ` (${neighbor.source})` : "");
      renderPredictions(classified, label, "Classified from the gallery's small thumbnail (the service keeps no "
        + "original), so the classes can differ from those of the full image.");
      renderNeighbors(found);
    },
  };
}

// --- rendering --------------------------------------------------------------------------------------

const formatPercent = (p) => `${(p * 100).toFixed(1)}%`;
const formatMs = (ms) => `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function renderTiming(target, answer, what) {
  const { data, roundTripMs } = answer;
  target.textContent = `${data.model.name} ${data.model.version} · ${what} · `
    + `server ${formatMs(data.elapsed_ms)} · round trip ${formatMs(roundTripMs)}`;
}

/** The left half of the paper's Figure 4: the top-5 classes as bars, the true label (if known) marked. */
function renderPredictions(classified, trueLabel, note) {
  const { predictions } = classified.data.results[0];
  const list = $("predictions");
  list.replaceChildren();
  for (const p of predictions) {
    const row = element("li", "bar-row");
    const name = element("span", "bar-label", p.label);
    if (p.label === trueLabel) {
      row.classList.add("true-label");
      name.append(element("span", "tag", "true label"));
    }
    const track = element("span", "bar-track");
    track.setAttribute("aria-hidden", "true");
    const fill = element("span", "bar-fill");
    fill.style.width = `${Math.max(0, Math.min(100, p.probability * 100))}%`;
    track.append(fill);
    row.append(name, track, element("span", "bar-value", formatPercent(p.probability)));
    list.append(row);
  }
  const notes = [];
  if (note) notes.push(note);
  if (trueLabel !== null && !predictions.some((p) => p.label === trueLabel)) {
    notes.push(`The true label, ${trueLabel}, is not among the top ${predictions.length}.`);
  }
  $("predictions-note").textContent = notes.join(" ");
  $("predictions-note").hidden = notes.length === 0;
  renderTiming($("classify-timing"), classified, `TTA ${classified.data.tta}`);
}

function renderNeighbors(found) {
  const list = $("neighbors");
  list.replaceChildren();
  for (const n of found.data.neighbors) {
    const item = element("li");
    const button = element("button", "thumb");
    button.type = "button";
    button.dataset.id = String(n.id);
    button.setAttribute("aria-label", `Search from gallery item ${n.id}: ${n.label}, distance ${n.distance.toFixed(2)}`);
    const img = element("img");
    img.src = n.thumbnail_url;
    img.alt = `Gallery item ${n.id}, ${n.label}`;
    img.loading = "lazy";
    const distance = element("span", "thumb-distance", `distance ${n.distance.toFixed(2)}`);
    button.append(img, element("span", "thumb-label", n.label), distance);
    button.addEventListener("click", () => runQuery(galleryQuery(n)));
    item.append(button);
    list.append(item);
  }
  if (!found.data.neighbors.length) list.append(element("li", "note", "The gallery is empty."));
  renderTiming($("similar-timing"), found, `query feature ${found.data.feature}`);
}

async function showModel() {
  try {
    const { data } = await callApi("/v1/models");
    const m = data.models[0];
    $("model-info").textContent = `Model ${m.name} ${m.version} · ${m.manifest.labels.length} classes · `
      + `${m.provider} · gallery of ${m.gallery_size} images`;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    $("model-info").textContent = `Model information unavailable: ${err.message}`;
  }
}

// --- wiring -----------------------------------------------------------------------------------------

function pick(files) {
  if (files && files.length) runQuery(fileQuery(files[0]));
}

function init() {
  setState("idle", "");
  const input = $("file-input");
  input.addEventListener("change", () => {
    pick(input.files);
    input.value = ""; // choosing the same file again runs it again
  });

  const zone = $("drop-zone");
  // a file dropped beside the zone must not make the browser navigate away to it
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (e) => e.preventDefault());
  zone.addEventListener("dragenter", () => zone.classList.add("dragging"));
  zone.addEventListener("dragover", () => zone.classList.add("dragging"));
  zone.addEventListener("dragleave", (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (e) => {
    zone.classList.remove("dragging");
    pick(e.dataTransfer.files);
  });

  const rerun = () => {
    if (lastQuery) runQuery(lastQuery);
  };
  $("tta").addEventListener("change", rerun);
  $("k").addEventListener("change", rerun);
  $("query-form").addEventListener("submit", (e) => e.preventDefault()); // Enter in k: its change re-runs
  showModel();
}

init();
