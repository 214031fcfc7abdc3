// genlab web page: a playground for the registered models and a gallery of stored generations.
// Plain ES module, no dependencies. Every /v1 call sends the key kept in localStorage; errors show the
// server's one-line `detail`. The DOM is built with textContent only, so stored prompts never become HTML.

const KEY_STORAGE = "genlab.apiKey";
const MODEL_STORAGE = "genlab.model";
const GALLERY_PAGE = 12;
const SEARCH_K = 48;

const $ = (id) => document.getElementById(id);

const state = {
  key: readStorage(KEY_STORAGE),
  models: [],
  running: null, // the AbortController of the generation in flight
  resultBlobs: new Set(),
  galleryBlobs: new Set(),
  myRatings: new Map(), // generation id → the rating given from this page
  gallery: { mode: "list", query: "", like: null, offset: 0, ticket: 0, stale: true },
};

// --- small helpers ------------------------------------------------------------------------------------
function readStorage(name) {
  try {
    return localStorage.getItem(name) || "";
  } catch {
    return "";
  }
}

function writeStorage(name, value) {
  try {
    if (value) localStorage.setItem(name, value);
    else localStorage.removeItem(name);
  } catch {
    // storage disabled: the key lasts for this page only
  }
}

/** Build an element: h("a", {href, class, "data-testid"}, "text", child). */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function formatMs(ms) {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function formatTime(iso) {
  const date = new Date(iso);
  const seconds = (date.getTime() - Date.now()) / 1000;
  if (Math.abs(seconds) < 45) return "just now";
  if (Math.abs(seconds) < 3600) return relative.format(Math.round(seconds / 60), "minute");
  if (Math.abs(seconds) < 86400) return relative.format(Math.round(seconds / 3600), "hour");
  return absolute.format(date);
}

function modelLabel(m) {
  return `${m.name}:${m.version}`;
}

function isTextual(model) {
  return model.modality === "text" || model.modality === "music";
}

function metaList(pairs) {
  return h("dl", { class: "meta" }, pairs.filter(Boolean).map(([term, value, testid]) => [
    h("dt", {}, term),
    h("dd", { "data-testid": testid }, value),
  ]));
}

// --- the API --------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status; // 0: no key or no connection; -1: a stream that failed after it started
    this.detail = detail;
  }
}

class InputError extends Error {}

async function request(path, { method = "GET", body, signal } = {}) {
  if (!state.key) {
    showNotice("No API key yet: paste one in the API key field at the top and press Save.");
    throw new ApiError(0, "No API key: paste one in the API key field at the top and press Save.");
  }
  const headers = { Authorization: `Bearer ${state.key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `Cannot reach the server (${err.message}).`);
  }
  if (response.ok) return response;
  let detail = `${response.status} ${response.statusText}`.trim();
  try {
    const data = await response.json();
    if (typeof data?.detail === "string") detail = data.detail;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 401) showNotice(`The server did not accept this API key: ${detail}`);
  throw new ApiError(response.status, detail);
}

async function getJSON(path, options) {
  return (await request(path, options)).json();
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  return search.toString();
}

/** A blob: URL for a stored file (the file endpoint needs the key header, so <img src> cannot fetch it). */
async function blobUrl(path, owner) {
  const blob = await (await request(path)).blob();
  const url = URL.createObjectURL(blob);
  owner.add(url);
  return url;
}

function revokeAll(owner) {
  for (const url of owner) URL.revokeObjectURL(url);
  owner.clear();
}

/** Server-sent events from a fetch response: yields {event, data} per block. */
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) yield event;
    }
  }
  const last = parseEvent(buffer);
  if (last) yield last;
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, data: data.join("\n") } : null;
}

// --- messages ---------------------------------------------------------------------------------------------
function showNotice(text) {
  const box = $("auth-message");
  box.textContent = text;
  box.hidden = false;
}

function hideNotice() {
  $("auth-message").hidden = true;
}

function describe(err) {
  if (err instanceof InputError) return ["Check the form.", err.message];
  if (!(err instanceof ApiError)) return ["Something went wrong.", String(err?.message ?? err)];
  if (err.status === 401) return ["API key not accepted.", err.detail];
  if (err.status === 403) return ["Not allowed with this key.", err.detail];
  if (err.status === 404) return ["Not found.", err.detail];
  if (err.status === 429) return ["Too many requests.", err.detail];
  if (err.status === -1) return ["Generation failed.", err.detail];
  if (err.status >= 500) return ["Server error.", err.detail];
  if (err.status >= 400) return ["Request rejected.", err.detail];
  return ["", err.detail];
}

function showError(box, err) {
  const [title, detail] = describe(err);
  box.replaceChildren(title ? h("strong", {}, title) : "", title ? " " : "", h("span", { "data-testid": "error-detail" }, detail));
  box.hidden = false;
}

function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
}

// --- key ---------------------------------------------------------------------------------------------------
function initKey() {
  const input = $("api-key");
  input.value = state.key;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = input.value.trim();
    writeStorage(KEY_STORAGE, state.key);
    onKeyChanged();
    const button = event.submitter ?? $("key-form").querySelector("[type=submit]");
    button.textContent = "Saved";
    setTimeout(() => { button.textContent = "Save"; }, 1500);
  });
  $("forget-key").addEventListener("click", () => {
    input.value = "";
    state.key = "";
    writeStorage(KEY_STORAGE, "");
    onKeyChanged();
  });
}

function onKeyChanged() {
  clearError($("generate-error"));
  clearError($("gallery-error"));
  state.gallery.stale = true;
  if (!state.key) {
    showNotice("Enter an API key above to use the playground and the gallery.");
    setModels([]);
    revokeAll(state.galleryBlobs);
    $("cards").replaceChildren();
    $("gallery-status").textContent = "";
    $("load-more").hidden = true;
    return;
  }
  hideNotice();
  loadModels();
  if (!$("gallery").hidden) loadGallery();
}

// --- models ------------------------------------------------------------------------------------------------
async function loadModels() {
  const select = $("model");
  select.replaceChildren(h("option", { value: "" }, "Loading models…"));
  try {
    setModels(await getJSON("/v1/models"));
    hideNotice();
  } catch (err) {
    setModels([], err.status === 401 ? "API key not accepted" : "Could not load models");
    if (err.status !== 401) showError($("generate-error"), err); // a rejected key is already in the notice
  }
}

function setModels(models, emptyText) {
  state.models = [...models].sort((a, b) => modelLabel(a).localeCompare(modelLabel(b)));
  const select = $("model");
  if (!state.models.length) {
    const text = emptyText ?? (state.key ? "No models registered" : "Enter an API key to load models");
    select.replaceChildren(h("option", { value: "" }, text));
  } else {
    select.replaceChildren(...state.models.map((m) =>
      h("option", { value: modelLabel(m) }, `${modelLabel(m)} — ${m.family} · ${m.modality}`)));
    const saved = readStorage(MODEL_STORAGE);
    if (state.models.some((m) => modelLabel(m) === saved)) select.value = saved;
  }
  const filter = $("filter-model");
  const chosen = filter.value;
  const names = [...new Set(state.models.map((m) => m.name))];
  filter.replaceChildren(h("option", { value: "" }, "All models"), ...names.map((n) => h("option", { value: n }, n)));
  if (names.includes(chosen)) filter.value = chosen;
  onModelChange();
}

function currentModel() {
  return state.models.find((m) => modelLabel(m) === $("model").value) ?? null;
}

function onModelChange() {
  const model = currentModel();
  const info = $("model-info");
  $("text-params").hidden = !model || !isTextual(model);
  $("image-params").hidden = !model || isTextual(model);
  $("generate").disabled = !model || state.running !== null;
  if (!model) {
    info.replaceChildren();
    return;
  }
  writeStorage(MODEL_STORAGE, modelLabel(model));
  $("image-params").querySelector("legend").textContent = model.modality === "audio" ? "Audio" : "Image";
  $("stream-field").hidden = model.modality !== "text";
  $("num-steps-field").hidden = model.family !== "diffusion";
  const details = [model.recipe && `recipe ${model.recipe}`, model.dataset && `trained on ${model.dataset}`];
  info.replaceChildren(
    h("span", { class: "pill" }, model.family),
    h("span", { class: "pill" }, model.modality),
    " ",
    details.filter(Boolean).join(" · "),
  );
}

// --- playground ----------------------------------------------------------------------------------------------
function readNumber(id, label, { integer = true, min = null, max = null } = {}) {
  const input = $(id);
  const raw = input.value.trim();
  if (raw === "") {
    if (!input.validity.valid) throw new InputError(`${label} is not a number.`);
    return null;
  }
  const value = Number(raw);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new InputError(`${label} must be ${integer ? "a whole number" : "a number"}; got "${raw}".`);
  }
  if ((min !== null && value < min) || (max !== null && value > max)) {
    const range = max === null ? `at least ${min}` : `from ${min} to ${max}`;
    throw new InputError(`${label} must be ${range}; got ${raw}.`);
  }
  return value;
}

function readLabels() {
  const raw = $("labels").value.trim();
  if (!raw) return null;
  return raw.split(/[\s,]+/).filter(Boolean).map((part) => {
    if (!/^\d+$/.test(part)) throw new InputError(`Labels are whole numbers separated by commas or spaces; "${part}" is not one.`);
    return Number(part);
  });
}

function buildRequest(model) {
  const body = { model: modelLabel(model), parameters: {} };
  const seed = readNumber("seed", "Seed", { min: 0 });
  if (seed !== null) body.seed = seed;
  const put = (name, value) => { if (value !== null) body.parameters[name] = value; };
  if (isTextual(model)) {
    const prompt = $("prompt").value;
    if (prompt) body.prompt = prompt;
    put("max_new_tokens", readNumber("max-new-tokens", "Max new tokens", { min: 1 }));
    put("temperature", readNumber("temperature", "Temperature", { integer: false, min: 0 }));
    put("top_k", readNumber("top-k", "Top-k", { min: 1 }));
    put("top_p", readNumber("top-p", "Top-p", { integer: false, min: 0, max: 1 }));
    const rag = $("rag").value.trim();
    if (rag) body.rag = rag;
    body.stream = model.modality === "text" && $("stream").checked;
  } else {
    body.n = readNumber("n", "Images", { min: 1 }) ?? 1;
    const labels = readLabels();
    if (labels) body.labels = labels;
    if (model.family === "diffusion") put("num_steps", readNumber("num-steps", "Sampling steps", { min: 1 }));
  }
  return body;
}

function setRunning(controller, text = "") {
  state.running = controller;
  const busy = controller !== null;
  $("generate").disabled = busy || !currentModel();
  $("generate").textContent = busy ? "Generating…" : "Generate";
  $("stop").hidden = !busy;
  $("results").setAttribute("aria-busy", String(busy));
  setProgress(text, busy);
}

function setProgress(text, spinning = false) {
  $("progress").replaceChildren(spinning ? h("span", { class: "spinner", "aria-hidden": "true" }) : "", text);
}

async function onGenerate(event) {
  event.preventDefault();
  if (state.running) return;
  const box = $("generate-error");
  clearError(box);
  const model = currentModel();
  let body;
  try {
    if (!model) throw new InputError(state.key ? "Pick a model first." : "Enter an API key, then pick a model.");
    body = buildRequest(model);
  } catch (err) {
    showError(box, err);
    return;
  }
  const controller = new AbortController();
  setRunning(controller, body.stream ? "Waiting for the first token…" : "Generating…");
  revokeAll(state.resultBlobs);
  $("results").replaceChildren(); // an error must not sit beside the previous run's outputs
  try {
    if (body.stream) {
      await streamText(body, model, controller.signal);
    } else {
      const answer = await getJSON("/v1/generate", { method: "POST", body, signal: controller.signal });
      await showRun(answer, model, body.prompt);
    }
    state.gallery.stale = true;
    setRunning(null, "Done.");
  } catch (err) {
    if (err.name === "AbortError") {
      setRunning(null, "Stopped; nothing was stored.");
      $("results").querySelector(".streaming")?.classList.remove("streaming");
    } else {
      setRunning(null, "");
      showError(box, err);
      box.scrollIntoView({ block: "nearest" }); // on a phone the output panel is below the form
    }
  }
}

function runHead({ model, count, seed, latency }) {
  const reuse = h("button", {
    type: "button",
    class: "linklike",
    "data-testid": "reuse-seed",
    onclick: () => { $("seed").value = String(seed); $("seed").focus(); },
  }, "reuse seed");
  return h("div", { class: "run-head", "data-testid": "run-head" },
    h("strong", {}, model),
    h("span", {}, `${count} output${count === 1 ? "" : "s"}`),
    h("span", {}, `seed ${seed}`),
    h("span", {}, formatMs(latency)),
    reuse);
}

function textBlock(prompt, text) {
  const generated = h("span", { class: "generated", "data-testid": "generated-text" }, text ?? "");
  return h("pre", { class: "output-text", "data-testid": "result-text" },
    prompt ? h("span", { class: "prompt" }, prompt) : "", generated);
}

function outputMeta(g) {
  return metaList([
    ["id", `#${g.id}`, "result-id"],
    ["seed", String(g.seed), "result-seed"],
    ["latency", formatMs(g.latency_ms), "result-latency"],
  ]);
}

/** Streams tokens into a <pre>; the stored generation arrives in the final `done` event. */
async function streamText(body, model, signal) {
  const response = await request("/v1/generate", { method: "POST", body, signal });
  const pre = textBlock(body.prompt, "");
  const generated = pre.querySelector(".generated");
  pre.classList.add("streaming");
  const output = h("div", { class: "output", "data-testid": "result" }, pre);
  $("results").replaceChildren(h("div", { class: "run-head" }, h("strong", {}, modelLabel(model)), "streaming…"), output);
  output.scrollIntoView({ block: "nearest" });
  let pieces = 0;
  for await (const event of serverEvents(response)) {
    if (event.event === "token") {
      generated.append(JSON.parse(event.data).text);
      pieces += 1;
      pre.dataset.pieces = String(pieces);
      setProgress(`Streaming… ${pieces} token${pieces === 1 ? "" : "s"}`, true);
    } else if (event.event === "done") {
      const g = JSON.parse(event.data);
      pre.classList.remove("streaming");
      generated.textContent = g.text ?? generated.textContent;
      output.dataset.generationId = String(g.id);
      output.append(outputMeta(g));
      $("results").replaceChildren(runHead({ model: g.model, count: 1, seed: g.seed, latency: g.latency_ms }), output);
      return;
    } else if (event.event === "error") {
      pre.classList.remove("streaming");
      throw new ApiError(-1, JSON.parse(event.data).detail);
    }
  }
  pre.classList.remove("streaming");
  throw new ApiError(-1, "the stream ended before the generation finished; nothing was stored.");
}

async function showRun(answer, model, prompt) {
  const gens = answer.generations;
  const head = runHead({ model: answer.model, count: gens.length, seed: answer.seed, latency: answer.latency_ms });
  if (isTextual(model)) {
    const outputs = gens.map((g) => h("div", { class: "output", "data-testid": "result", "data-generation-id": g.id },
      textBlock(prompt, g.text), g.kind === "music" ? midiLink(g, state.resultBlobs) : "", outputMeta(g)));
    $("results").replaceChildren(head, ...outputs);
    head.scrollIntoView({ block: "nearest" });
    return;
  }
  const tiles = gens.map((g) => h("figure", { class: "tile", "data-testid": "result", "data-generation-id": g.id },
    media(g, state.resultBlobs, "result-image"),
    h("figcaption", {}, metaList([
      ["id", `#${g.id}`, "result-id"],
      ["seed", String(g.seed), "result-seed"],
      ["index", String(g.index), "result-index"],
      ["latency", formatMs(g.latency_ms), "result-latency"],
    ]))));
  $("results").replaceChildren(head, h("div", { class: "tiles" }, tiles));
  head.scrollIntoView({ block: "nearest" });
  await Promise.allSettled([...$("results").querySelectorAll("img")].map((img) => img.decode?.()));
}

// --- media ---------------------------------------------------------------------------------------------------
function media(g, owner, testid) {
  if (!g.file_url) return h("span", { class: "help" }, "no file");
  if (g.mime?.startsWith("image/")) {
    const img = h("img", { class: "pixel", alt: `Generated ${g.kind} #${g.id} from ${g.model}`, "data-testid": testid });
    img.addEventListener("load", () => img.classList.toggle("large", img.naturalWidth > 96));
    blobUrl(g.file_url, owner).then((url) => { img.src = url; }, (err) => {
      img.replaceWith(h("span", { class: "help", role: "img", "aria-label": "image unavailable" }, describe(err)[1]));
    });
    return img;
  }
  if (g.mime?.startsWith("audio/") && !g.mime.includes("midi")) {
    const audio = h("audio", { controls: true, preload: "none", "data-testid": testid });
    blobUrl(g.file_url, owner).then((url) => { audio.src = url; }, () => {});
    return audio;
  }
  return midiLink(g, owner);
}

function midiLink(g, owner) {
  if (!g.file_url) return h("p", { class: "help" }, "No MIDI file: this piece could not be rendered.");
  const link = h("a", { class: "btn btn-small", download: `genlab-${g.id}.mid`, "data-testid": "result-midi", "aria-disabled": "true" },
    "Preparing MIDI…");
  blobUrl(g.file_url, owner).then((url) => {
    link.href = url;
    link.textContent = "Download MIDI";
    link.removeAttribute("aria-disabled");
  }, (err) => { link.textContent = `MIDI unavailable: ${describe(err)[1]}`; });
  return h("p", {}, link);
}

// --- gallery --------------------------------------------------------------------------------------------------
function galleryFilters() {
  return { model: $("filter-model").value, kind: $("filter-kind").value };
}

async function loadGallery({ append = false } = {}) {
  const g = state.gallery;
  const ticket = ++g.ticket; // a newer load makes this one's answer stale
  const box = $("gallery-error");
  clearError(box);
  g.stale = false;
  const more = $("load-more");
  more.disabled = true;
  $("gallery-status").replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }), " Loading…");
  let items;
  let hasMore = false;
  try {
    if (g.mode === "list") {
      const offset = append ? g.offset : 0;
      items = await getJSON(`/v1/generations?${query({ ...galleryFilters(), limit: GALLERY_PAGE, offset })}`);
      if (ticket !== g.ticket) return;
      g.offset = offset + items.length;
      hasMore = items.length === GALLERY_PAGE;
    } else {
      const params = g.mode === "similar"
        ? { like: g.like, k: 24, ...galleryFilters() }
        : { q: g.query, mode: $("search-mode").value, k: SEARCH_K, ...galleryFilters() };
      const hits = await getJSON(`/v1/search?${query(params)}`);
      if (ticket !== g.ticket) return;
      items = hits.map((hit) => ({ ...hit.generation, searchScore: hit.score }));
    }
  } catch (err) {
    if (ticket !== g.ticket) return;
    showError(box, err);
    $("gallery-status").textContent = "";
    more.disabled = false;
    return;
  }
  if (!append) {
    revokeAll(state.galleryBlobs);
    $("cards").replaceChildren();
  }
  $("cards").append(...items.map(card));
  const shown = $("cards").children.length;
  if (!shown) $("cards").append(h("li", { class: "gallery-empty", "data-testid": "gallery-empty" }, emptyText()));
  more.hidden = !hasMore;
  more.disabled = false;
  galleryStatus(shown);
}

function emptyText() {
  const g = state.gallery;
  if (g.mode === "search") return `Nothing matches “${g.query}”. Try other words or another mode.`;
  if (g.mode === "similar") return "No similar generations found.";
  return "No generations yet. Make some in the playground.";
}

function galleryStatus(shown) {
  const g = state.gallery;
  const status = $("gallery-status");
  const showAll = h("button", { type: "button", class: "linklike", "data-testid": "show-all", onclick: resetGallery }, "show all");
  if (g.mode === "list") status.replaceChildren(`Newest first · ${shown} shown`);
  else if (g.mode === "search") {
    status.replaceChildren(`${shown} result${shown === 1 ? "" : "s"} for “${g.query}” (${$("search-mode").value}) · `, showAll);
  } else status.replaceChildren(`${shown} generation${shown === 1 ? "" : "s"} similar to #${g.like} · `, showAll);
}

function resetGallery() {
  $("search-input").value = "";
  Object.assign(state.gallery, { mode: "list", query: "", like: null });
  loadGallery();
}

function cardOutput(g) {
  if (g.kind !== "text" && g.kind !== "music") return media(g, state.galleryBlobs, "card-image");
  const prompt = g.prompt ? h("span", { class: "prompt" }, g.prompt.length > 120 ? `${g.prompt.slice(0, 120)}…` : g.prompt) : "";
  const text = g.text ?? "";
  const pre = h("pre", { class: "card-text", "data-testid": "card-text" }, prompt, text.length > 400 ? `${text.slice(0, 400)}…` : text);
  return g.kind === "music" ? [pre, midiLink(g, state.galleryBlobs)] : pre;
}

function ratingText(g) {
  if (!g.num_feedback || g.rating === null) return ["No ratings yet"];
  return [h("strong", {}, `★ ${g.rating.toFixed(1)}`), ` · ${g.num_feedback} rating${g.num_feedback === 1 ? "" : "s"}`];
}

function paintStars(cardNode, g) {
  const mine = state.myRatings.get(g.id);
  const shown = Math.round(mine ?? g.rating ?? 0);
  cardNode.querySelectorAll(".star").forEach((star, i) => {
    star.classList.toggle("on", i < shown);
    star.setAttribute("aria-pressed", String(mine === i + 1));
  });
  cardNode.querySelector(".rating").replaceChildren(...ratingText(g));
}

function card(g) {
  const node = h("li", { class: "card", "data-testid": "card", "data-id": g.id });
  const stars = h("div", { class: "stars", role: "group", "aria-label": `Rate #${g.id}` },
    [1, 2, 3, 4, 5].map((value) => h("button", {
      type: "button",
      class: "star",
      "aria-label": `Rate ${value} out of 5`,
      title: `Rate ${value} out of 5`,
      "data-testid": `rate-${value}`,
      onclick: () => rate(g, value, node),
    }, "★")));
  const similar = h("button", {
    type: "button",
    class: "btn btn-small btn-ghost",
    "data-testid": "similar",
    "aria-label": `Find generations similar to #${g.id}`,
    onclick: () => {
      Object.assign(state.gallery, { mode: "similar", like: g.id, query: "" });
      loadGallery();
    },
  }, "Similar");
  const meta = [["seed", String(g.seed)]];
  if (g.parameters?.labels) meta.push(["labels", g.parameters.labels.join(", ")]);
  if (g.searchScore !== undefined) meta.push(["score", g.searchScore.toFixed(3)]);
  node.append(
    h("div", { class: `card-output${g.kind === "text" || g.kind === "music" ? " is-text" : ""}` }, cardOutput(g)),
    h("div", { class: "card-body" },
      h("div", { class: "card-title" },
        h("span", {}, h("span", { class: "pill", "data-testid": "card-model" }, g.model), " ", h("span", { class: "id" }, `#${g.id}`)),
        h("time", { datetime: g.created_at, title: absolute.format(new Date(g.created_at)) }, formatTime(g.created_at))),
      metaList(meta),
      h("div", { class: "card-actions" },
        h("div", {}, stars, h("div", { class: "rating", "data-testid": "card-rating", "aria-live": "polite" })),
        similar)),
  );
  paintStars(node, g);
  return node;
}

async function rate(g, value, node) {
  const box = $("gallery-error");
  clearError(box);
  const buttons = node.querySelectorAll(".star");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await request("/v1/feedback", { method: "POST", body: { generation_id: g.id, rating: value } });
    state.myRatings.set(g.id, value);
    const fresh = await getJSON(`/v1/generations/${g.id}`);
    Object.assign(g, { rating: fresh.rating, num_feedback: fresh.num_feedback });
    paintStars(node, g);
    node.dataset.rated = String(value);
  } catch (err) {
    showError(box, err);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function initGallery() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("search-input").value.trim();
    Object.assign(state.gallery, text ? { mode: "search", query: text, like: null } : { mode: "list", query: "", like: null });
    loadGallery();
  });
  $("search-reset").addEventListener("click", () => {
    $("filter-model").value = "";
    $("filter-kind").value = "";
    $("search-mode").value = "hybrid";
    resetGallery();
  });
  for (const id of ["filter-model", "filter-kind"]) $(id).addEventListener("change", () => loadGallery());
  $("load-more").addEventListener("click", () => loadGallery({ append: true }));
}

// --- views ------------------------------------------------------------------------------------------------------
const VIEWS = ["playground", "gallery"];

function showView(name, { focus = false } = {}) {
  for (const view of VIEWS) {
    const tab = $(`tab-${view}`);
    const selected = view === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(view).hidden = !selected;
    if (selected && focus) tab.focus();
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "gallery" && state.key && state.gallery.stale) loadGallery();
}

function initTabs() {
  for (const view of VIEWS) $(`tab-${view}`).addEventListener("click", () => showView(view));
  $("tab-playground").parentElement.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const current = VIEWS.findIndex((v) => $(`tab-${v}`).getAttribute("aria-selected") === "true");
    const next = (current + (event.key === "ArrowRight" ? 1 : VIEWS.length - 1)) % VIEWS.length;
    showView(VIEWS[next], { focus: true });
    event.preventDefault();
  });
  window.addEventListener("hashchange", () => {
    const name = location.hash.slice(1);
    if (VIEWS.includes(name)) showView(name);
  });
}

// --- start --------------------------------------------------------------------------------------------------------
function init() {
  initKey();
  initTabs();
  initGallery();
  $("model").addEventListener("change", onModelChange);
  $("generate-form").addEventListener("submit", onGenerate);
  $("prompt").addEventListener("keydown", (event) => { // Ctrl/⌘+Enter generates from the prompt box
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      $("generate-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.running?.abort());
  const start = location.hash.slice(1);
  showView(VIEWS.includes(start) ? start : "playground");
  if (state.key) loadModels();
  else showNotice("Enter an API key above to use the playground and the gallery.");
}

init();
