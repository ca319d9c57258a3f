// The page of `analogy serve`: a form built from the server's option fields, a job view that polls
// the job's state, and the list of this browser's jobs (kept in localStorage). No framework, no build.

const $ = (selector) => document.querySelector(selector);
const POLL_MS = 400;
const HISTORY_KEY = "analogy.jobs";
const STATE_WORDS = { queued: "queued", running: "running", done: "done", failed: "failed", gone: "not found" };
// A file for A that goes to the server as a clip (the field `video`): by its type, else its name.
const VIDEO_NAME = /\.(mp4|m4v|mkv|webm|mov|avi|mpe?g|ogv)$/i;
const VIDEO_ACCEPT = "image/*,video/*,.mp4,.m4v,.mkv,.webm,.mov";

let form = null;          // GET /api/form: fields, limits, examples
let shownJob = null;      // id of the job on display
let pollTimer = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function isVideo(file) { return !!file && (file.type.startsWith("video/") || VIDEO_NAME.test(file.name)); }
function capitalised(text) { return text.replace(/^./, (c) => c.toUpperCase()); }

function megabytes(n) { return `${+(n / 1e6).toPrecision(3)} MB`; }
function fileSize(n) { return n < 1e6 ? `${Math.max(1, Math.round(n / 1e3))} KB` : megabytes(n); }

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
  } catch (e) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

// ---- the form ---------------------------------------------------------------------------------

function labelOf(name) { return name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()); }

function fieldInput(field) {
  const id = `opt-${field.name}`;
  if (field.kind === "flag") {
    return el("div", { class: "field flag" },
      el("input", { type: "checkbox", id, name: field.name, value: "true" }),
      el("div", {}, el("label", { for: id, text: labelOf(field.name) }), el("div", { class: "help", text: field.help })));
  }
  let input;
  if (field.kind === "choice") {
    input = el("select", { id, name: field.name });
    for (const choice of field.choices) {
      input.append(el("option", { value: choice, selected: String(field.default) === choice, text: choice }));
    }
  } else {
    const numeric = field.kind === "int" || field.kind === "float";
    input = el("input", {
      id, name: field.name, type: numeric ? "number" : "text", step: field.kind === "float" ? "any" : "1",
      placeholder: field.default === null ? "auto" : String(field.default),
    });
  }
  return el("div", { class: "field" }, el("label", { for: id, text: labelOf(field.name) }), input,
    el("div", { class: "help", text: field.help }));
}

function showFile(slot, file) {
  const drop = document.querySelector(`.drop[data-slot="${slot}"]`);
  const img = drop.querySelector("img");
  const video = drop.querySelector("video");  // A's drop only: a clip plays there, muted
  for (const media of [img, video]) if (media && media.src.startsWith("blob:")) URL.revokeObjectURL(media.src);
  const moving = !!video && isVideo(file);
  drop.classList.toggle("filled", !!file);
  drop.querySelector(".hint").hidden = !!file;
  img.hidden = !file || moving;
  img.src = file && !moving ? URL.createObjectURL(file) : "";
  if (video) {
    video.hidden = !moving;
    if (moving) {
      video.src = URL.createObjectURL(file);
      video.play().catch(() => { /* a format this browser cannot play: the name says what it is */ });
    } else {
      video.removeAttribute("src");
      video.load();
    }
  }
  drop.querySelector(".filename").textContent = file ? `${file.name} · ${fileSize(file.size)}${moving ? " · video" : ""}` : "";
}

function setFile(slot, file) {
  const input = document.querySelector(`input[name="${slot}"]`);
  const transfer = new DataTransfer();
  transfer.items.add(file);
  input.files = transfer.files;
  showFile(slot, file);
}

async function useExample(example) {
  for (const slot of ["a", "bprime"]) {
    const response = await fetch(example[slot]);
    const blob = await response.blob();
    setFile(slot, new File([blob], example[slot].split("/").pop(), { type: blob.type }));
  }
  showFormError(null);
}

function showFormError(message) {
  const box = $("#form-error");
  box.hidden = !message;
  box.textContent = message || "";
}

function setUpDrops() {
  for (const drop of document.querySelectorAll(".drop")) {
    const slot = drop.dataset.slot;
    const input = drop.querySelector("input");
    input.addEventListener("change", () => showFile(slot, input.files[0]));
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      if (event.dataTransfer.files.length) setFile(slot, event.dataTransfer.files[0]);
    });
  }
}

async function submitJob(event) {
  event.preventDefault();
  showFormError(null);
  const data = new FormData();
  for (const [slot, label] of [["a", "A"], ["bprime", "B′"]]) {
    const file = document.querySelector(`input[name="${slot}"]`).files[0];
    if (!file) return showFormError(slot === "a" && form.video ? "Choose an image or a video for A." : `Choose an image for ${label}.`);
    const video = slot === "a" && isVideo(file);
    if (video && !form.video) {
      return showFormError(`A (${file.name}): this server cannot take videos (its video extra is not installed); choose an image`);
    }
    if (file.size > form.limits.upload_bytes) {
      return showFormError(`${label} (${file.name}): ${megabytes(file.size)}, over this server's limit of ` +
        `${megabytes(form.limits.upload_bytes)}; send a smaller ${video ? "clip" : "image"}`);
    }
    data.append(video ? "video" : slot, file, file.name);
  }
  for (const field of form.fields) {
    const input = document.getElementById(`opt-${field.name}`);
    if (field.kind === "flag") { if (input.checked) data.append(field.name, "true"); }
    else if (input.value.trim() !== "") data.append(field.name, input.value.trim());
  }
  const button = $("#run");
  button.disabled = true;
  try {
    const response = await fetch("/api/jobs", { method: "POST", body: data });
    if (!response.ok) {
      return showFormError(await errorText(response));
    }
    const job = await response.json();
    remember(job);
    navigate(`/jobs/${job.id}`);
  } catch (error) {
    showFormError(`The server cannot be reached (${error.message}).`);
  } finally {
    button.disabled = false;
  }
}

// ---- this browser's jobs ------------------------------------------------------------------------

function storedJobs() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY)) || []; } catch (e) { return []; }
}

function remember(job) {
  const entries = storedJobs().filter((entry) => entry.id !== job.id);
  entries.unshift({ id: job.id, a: job.inputs.a.name, bprime: job.inputs.bprime.name, created: job.created, state: job.state });
  localStorage.setItem(HISTORY_KEY, JSON.stringify(entries.slice(0, 30)));
  renderHistory();
}

function noteState(id, state) {
  const entries = storedJobs();
  const entry = entries.find((e) => e.id === id);
  if (entry && entry.state !== state) {
    entry.state = state;
    localStorage.setItem(HISTORY_KEY, JSON.stringify(entries));
    renderHistory();
  }
}

function forget(id) {
  localStorage.setItem(HISTORY_KEY, JSON.stringify(storedJobs().filter((entry) => entry.id !== id)));
  renderHistory();
}

function renderHistory() {
  const list = $("#history");
  list.replaceChildren();
  const entries = storedJobs();
  if (!entries.length) list.append(el("li", { class: "muted", text: "None yet." }));
  for (const entry of entries) {
    const time = entry.created ? new Date(entry.created).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    const link = el("a", { href: `/jobs/${entry.id}`, text: `${entry.a} → ${entry.bprime}`, title: entry.id });
    link.addEventListener("click", (event) => { event.preventDefault(); navigate(`/jobs/${entry.id}`); });
    list.append(el("li", { class: entry.id === shownJob ? "current" : null },
      el("span", { class: `badge ${entry.state}`, text: STATE_WORDS[entry.state] || entry.state }), link,
      el("span", { class: "muted", text: time })));
  }
}

// ---- the job view ---------------------------------------------------------------------------------

const MAIN_FIGURES = [
  ["A.png", "A", "structure"], ["B_prime.png", "B′", "appearance"],
  ["A_prime.png", "A′", "A's layout, B′'s look"], ["B.png", "B", "B′'s layout, A's look"],
];
const FLOW_FIGURES = [["flow_ab.png", "Flow A → B′", "where each pixel of A lies in B′"],
  ["flow_ba.png", "Flow B′ → A", "where each pixel of B′ lies in A"]];
// A video job: its clip's first frame, the style, and the stylised clip, playable.
const VIDEO_FIGURES = [
  ["A.png", "A", "the clip's first frame"], ["B_prime.png", "B′", "appearance"],
  ["A_prime.mp4", "A′", "the clip in B′'s look"],
];
const CONFIDENCE_FIGURES = [["confidence_ab.png", "Confidence A", "white: A → B′ → A returns"],
  ["confidence_ba.png", "Confidence B′", "white: B′ → A → B′ returns"]];

function fileUrl(id, name) { return `/api/jobs/${id}/files/${name}`; }

function figure(id, job, [name, title, what]) {
  const ready = job.files.includes(name);
  const moving = name.endsWith(".mp4");
  const frame = el("div", { class: "frame" });
  if (ready && moving) {
    frame.append(el("video", { src: fileUrl(id, name), controls: true, loop: true, playsinline: true,
      preload: "metadata", "aria-label": title, "data-file": name }));
  } else if (ready) frame.append(el("img", { src: fileUrl(id, name), alt: title, "data-file": name }));
  else frame.textContent = job.state === "failed" ? "not made" : "in progress";
  const classes = [moving ? "wide" : "", ready ? "" : "pending"].filter(Boolean).join(" ");
  return el("figure", { class: classes || null, "data-file": name }, frame,
    el("figcaption", {}, el("b", { text: title }),
      ready ? el("a", { href: fileUrl(id, name), download: name, text: "download" }) : el("span"),
      el("span", { class: "what", text: what })));
}

function renderFigures(container, id, job, figures) {
  const key = figures.map(([name]) => name + job.files.includes(name)).join() + job.state;
  if (container.dataset.key === key) return;  // unchanged: keep the images already loaded
  container.dataset.key = key;
  container.replaceChildren(...figures.map((spec) => figure(id, job, spec)));
}

function describeOptions(options) {
  const parts = Object.entries(options).map(([name, value]) => value === true ? name.replace(/_/g, " ") : `${name.replace(/_/g, " ")} ${value}`);
  return parts.length ? parts.join(", ") : "default options";
}

function videoSummary(job) {
  const a = job.inputs.a;
  const t = job.timings;
  const sizes = job.working_sizes;
  if (!t || !sizes) return "";
  return `Clip ${a.width}×${a.height}, ${a.frames} frames at ${+a.rate.toFixed(2)} fps${a.audio ? " with sound" : ""}; ` +
    `working size ${sizes.a[0]}×${sizes.a[1]}; first frame ${t.first_frame.toFixed(1)} s` +
    (t.later_frames !== undefined ? `, then ${t.later_frames.toFixed(1)} s a frame` : "") +
    `; encoding ${t.encoding.toFixed(1)} s.`;
}

function renderJob(id, job) {
  const video = job.kind === "video";
  $("#job").hidden = false;
  $("#intro").hidden = true;
  $("#job-title").textContent = `${job.inputs.a.name} → ${job.inputs.bprime.name}`;
  const badge = $("#job-state");
  badge.className = `badge ${job.state}`;
  badge.textContent = STATE_WORDS[job.state];
  $("#cancel").hidden = !["queued", "running"].includes(job.state);
  $("#delete").hidden = !["done", "failed"].includes(job.state);
  $("#job-meta").textContent = `${video ? `video of ${job.inputs.a.frames} frames · ` : ""}` +
    `${describeOptions(job.options)} · job ${id.slice(0, 8)}…`;

  const progress = $("#progress");
  progress.hidden = job.state === "failed";
  $("#progress-fill").style.width = `${Math.round(100 * job.progress.fraction)}%`;
  let stage = "";
  if (job.state === "queued") {
    stage = job.queue_position ? `Waiting: ${job.queue_position} job${job.queue_position > 1 ? "s" : ""} ahead` : "Waiting for a worker";
  } else if (job.state === "running" && video) {  // the frame running, and the time left
    stage = job.progress.stage ? capitalised(job.progress.stage) : "Starting";
  } else if (job.state === "running") {
    stage = job.progress.step ? `Step ${job.progress.step} of ${job.progress.steps}: ${job.progress.stage}` : "Starting";
  } else if (job.state === "done") {
    const total = job.timings && job.timings.total;
    stage = `Done${total ? ` in ${total.toFixed(1)} s` : ""}`;
  }
  $("#progress-stage").textContent = stage;

  const error = $("#job-error");
  error.hidden = !job.error;
  error.textContent = job.error || "";
  const warnings = $("#job-warnings");
  warnings.hidden = !job.warnings.length;
  warnings.replaceChildren(...job.warnings.map((w) => el("li", { text: w })));

  renderFigures($("#figures"), id, job, video ? VIDEO_FIGURES : MAIN_FIGURES);
  const done = job.state === "done";
  $("#extras").hidden = !done;
  const download = $("#download-zip");
  download.href = fileUrl(id, video ? "A_prime.mp4" : "analogy.zip");
  download.textContent = video ? "Download video (MP4)" : "Download all (zip)";
  download.setAttribute("download", video ? `analogy-${id.slice(0, 8)}.mp4` : "");
  for (const [button, box, figures] of [["#show-flow", "#flow", FLOW_FIGURES], ["#show-confidence", "#confidence", CONFIDENCE_FIGURES]]) {
    $(button).hidden = video;  // a video job makes A′ only
    const on = done && !video && $(button).getAttribute("aria-pressed") === "true";
    $(box).hidden = !on;
    if (on) renderFigures($(box), id, job, figures);  // loaded on demand
  }
  const sizes = job.working_sizes;
  const stages = ["features", "patchmatch", "deconvolution", "fusion", "synthesis", "reconstruction", "refinement"]
    .filter((stage) => job.timings && stage in job.timings).map((stage) => `${stage} ${job.timings[stage].toFixed(1)} s`);
  $("#job-summary").textContent = video ? videoSummary(job) : sizes ?
    `Inputs A ${job.inputs.a.width}×${job.inputs.a.height}, B′ ${job.inputs.bprime.width}×${job.inputs.bprime.height}; ` +
    `working sizes A ${sizes.a[0]}×${sizes.a[1]}, B′ ${sizes.bprime[0]}×${sizes.bprime[1]}; ${stages.join(", ")}.` : "";
  noteState(id, job.state);
}

function renderGone(id, message) {
  $("#job").hidden = false;
  $("#intro").hidden = true;
  $("#job-title").textContent = "Job not found";
  const badge = $("#job-state");
  badge.className = "badge gone";
  badge.textContent = STATE_WORDS.gone;
  for (const selector of ["#cancel", "#delete", "#progress", "#extras", "#flow", "#confidence", "#job-warnings"]) $(selector).hidden = true;
  $("#job-meta").textContent = `job ${id.slice(0, 8)}…`;
  const keep = form ? ` Finished jobs are kept ${Math.round(form.keep_seconds / 60)} min.` : "";
  $("#job-error").hidden = false;
  $("#job-error").textContent = `${message}.${keep}`;
  $("#figures").replaceChildren();
  $("#figures").dataset.key = "";
  $("#job-summary").textContent = "";
  noteState(id, "gone");
}

async function poll() {
  clearTimeout(pollTimer);
  const id = shownJob;
  if (!id) return;
  let job;
  try {
    const response = await fetch(`/api/jobs/${id}`, { cache: "no-store" });
    if (id !== shownJob) return;
    if (response.status === 404) return renderGone(id, await errorText(response));
    if (!response.ok) throw new Error(await errorText(response));
    job = await response.json();
  } catch (error) {
    $("#progress-stage").textContent = `The server cannot be reached (${error.message}); trying again…`;
    pollTimer = setTimeout(poll, 2000);
    return;
  }
  renderJob(id, job);
  if (job.state === "queued" || job.state === "running") pollTimer = setTimeout(poll, POLL_MS);
}

async function removeJob() {
  const id = shownJob;
  const response = await fetch(`/api/jobs/${id}`, { method: "DELETE" });
  if (response.ok || response.status === 404) {
    forget(id);
    navigate("/");
  }
}

// ---- routing: / is the form alone, /jobs/<id> a job's own address ------------------------------

function route() {
  const match = location.pathname.match(/^\/jobs\/([A-Za-z0-9_-]+)$/);
  shownJob = match ? match[1] : null;
  clearTimeout(pollTimer);
  for (const box of ["#figures", "#flow", "#confidence"]) $(box).dataset.key = "";
  for (const button of ["#show-flow", "#show-confidence"]) $(button).setAttribute("aria-pressed", "false");
  $("#job").hidden = !shownJob;
  $("#intro").hidden = !!shownJob;
  renderHistory();
  if (shownJob) poll();
}

function navigate(path) {
  if (location.pathname !== path) history.pushState({}, "", path);
  route();
}

async function start() {
  setUpDrops();
  $("#job-form").addEventListener("submit", submitJob);
  $("#cancel").addEventListener("click", removeJob);
  $("#delete").addEventListener("click", removeJob);
  for (const button of ["#show-flow", "#show-confidence"]) {
    $(button).addEventListener("click", () => {
      const pressed = $(button).getAttribute("aria-pressed") === "true";
      $(button).setAttribute("aria-pressed", String(!pressed));
      poll();
    });
  }
  window.addEventListener("popstate", route);
  const response = await fetch("/api/form");
  form = await response.json();
  const options = $("#options");
  for (const field of form.fields) options.append(fieldInput(field));
  for (const example of form.examples) {
    const button = el("button", { type: "button", text: example.title });
    button.addEventListener("click", () => useExample(example));
    $("#examples").append(button);
  }
  $("#limits").textContent = `up to ${megabytes(form.limits.upload_bytes)} and ` +
    `${+(form.limits.pixels / 1e6).toPrecision(3)} megapixels per image` +
    (form.video ? `; videos up to ${form.limits.frames} frames` : "");
  if (form.video) {  // A's drop takes a clip too
    $("input[name=a]").accept = VIDEO_ACCEPT;
    $(".drop[data-slot=a] .hint").textContent = "Drop an image or a short video here or click to choose";
    $("#intro-video").hidden = false;
  }
  route();
}

start();
