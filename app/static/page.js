// The page's behaviour: plain JavaScript, no build step, no third-party code. It calls the
// same public API as any client: GET /models, POST /predict, POST /explain?method=all.
"use strict";

(() => {
  const METHOD_NAMES = {
    cam: "CAM", gradcam: "Grad-CAM", "gradcam++": "Grad-CAM++", layercam: "LayerCAM",
  };
  const REQUEST_TIMEOUT_MS = 180000;
  const CONTROL_DELAY_MS = 250;
  const STATUS_TITLES = {
    0: "The service could not be reached.",
    400: "The image could not be used.",
    401: "An API key is needed.",
    403: "This key may not do that.",
    404: "Not found.",
    413: "The file is too large.",
    415: "This is not an image file the service can read.",
    422: "A setting was refused.",
    503: "The model is not available right now.",
  };

  const $ = (id) => document.getElementById(id);
  const meta = document.querySelector('meta[name="wbc-max-upload-bytes"]');
  const maxUploadBytes = Number(meta && meta.content) || 0;

  const state = {
    apiKey: null, // memory only: never written to storage or cookies
    model: null, // the served model, from GET /models
    image: null, // {blob, name, sha256}
    prediction: null, // /predict's answer for the image
    explanations: [], // one /explain answer per method
    explainParams: null, // the parameters those explanations were made with
    explainTiming: null, // {request_ms, passes_ms} of the request that made them
    run: 0, // bumped for each new image: answers of older runs are dropped
    explainRun: 0, // bumped for each new set of explanations
    retry: null, // what to redo once a key is given
    controlTimer: 0,
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // One call to the API: JSON in, JSON out, errors as ApiError with the service's message.
  async function api(path, body) {
    const headers = { Accept: "application/json" };
    if (state.apiKey) headers.Authorization = `Bearer ${state.apiKey}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    try {
      let response;
      try {
        response = await fetch(path, {
          method: body ? "POST" : "GET", headers, body, signal: controller.signal,
        });
      } catch (error) {
        throw networkError(controller, error);
      }
      let payload = null;
      try {
        payload = await response.json();
      } catch (error) {
        if (controller.signal.aborted) throw networkError(controller, error);
      }
      if (!response.ok) {
        const detail = payload && payload.error;
        throw new ApiError(response.status, (detail && detail.code) || "http_error",
          (detail && detail.message) || `the service answered ${response.status} ${response.statusText}`);
      }
      if (payload === null) throw new ApiError(response.status, "bad_answer", "the answer was not JSON");
      return payload;
    } finally {
      clearTimeout(timer);
    }
  }

  function networkError(controller, error) {
    if (controller.signal.aborted) {
      return new ApiError(0, "timeout", `no answer within ${REQUEST_TIMEOUT_MS / 1000} seconds`);
    }
    return new ApiError(0, "network", `${error.message || error}; check the connection and try again`);
  }

  function imageForm(image) {
    const form = new FormData();
    form.append("file", image.blob, image.name);
    return form;
  }

  // --- messages ---------------------------------------------------------------------------

  function setStatus(text, busy) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("busy", Boolean(busy));
  }

  function showError(title, detail) {
    const box = $("error");
    box.textContent = detail ? `${title}\n${capitalise(detail)}` : title;
    box.hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function capitalise(text) {
    return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
  }

  function handleError(error, retry) {
    if (!(error instanceof ApiError)) error = new ApiError(0, "page", String(error.message || error));
    const title = STATUS_TITLES[error.status] || `The request failed (${error.status}).`;
    if (error.status === 401) {
      state.retry = retry;
      if (state.apiKey) {
        askForKey("The API key was not accepted (401). Enter a valid key.");
        showError("The API key was not accepted.", error.message);
      } else {
        askForKey("This service needs an API key (401). Enter it to go on; it is kept in this " +
          "page's memory only and sent with each request.");
      }
      return;
    }
    showError(title, error.message);
  }

  // --- API key ----------------------------------------------------------------------------

  function askForKey(message) {
    $("key-message").textContent = message;
    $("key-form").hidden = false;
    $("key-input").focus();
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    state.apiKey = key;
    $("key-input").value = "";
    $("key-form").hidden = true;
    hideError();
    const retry = state.retry;
    state.retry = null;
    if (retry) retry();
  });

  // --- the model and the examples ---------------------------------------------------------

  async function loadModel() {
    const body = await api("/models");
    state.model = body.models[0];
    const { name, version, device } = state.model;
    $("model").textContent = `Model: ${name}, version ${version} (${device})`;
    const target = $("target");
    target.replaceChildren(new Option("Predicted class", ""));
    for (const label of state.model.classes) target.add(new Option(label, label));
  }

  async function start() {
    try {
      await loadModel();
    } catch (error) {
      $("model").textContent = "Model: unknown";
      handleError(error, start);
    }
  }

  async function loadExamples() {
    let body;
    try {
      body = await api("/examples");
    } catch (error) {
      return; // the page works without them
    }
    const list = $("examples");
    for (const example of body.examples) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.example = example.name;
      const image = document.createElement("img");
      image.src = example.url;
      image.alt = `Example smear, labelled ${example.label}`;
      const caption = document.createElement("span");
      caption.textContent = example.name.replace(/\.jpe?g$/i, "");
      button.append(image, caption);
      button.addEventListener("click", () => chooseExample(example));
      const item = document.createElement("li");
      item.append(button);
      list.append(item);
    }
    $("examples-box").hidden = body.examples.length === 0;
  }

  async function chooseExample(example) {
    hideError();
    setStatus(`Loading ${example.name}…`, true);
    try {
      const response = await fetch(example.url);
      if (!response.ok) throw new Error(`the example answered ${response.status}`);
      chooseImage(await response.blob(), example.name);
    } catch (error) {
      setStatus("");
      showError("The example could not be loaded.", String(error.message || error));
    }
  }

  // --- choosing an image: picker, drag and drop, paste -----------------------------------

  function chooseImage(blob, name) {
    hideError();
    if (maxUploadBytes && blob.size > maxUploadBytes) {
      state.run += 1; // drop whatever an earlier image still has in flight
      clearResults();
      setStatus("");
      showError(STATUS_TITLES[413], `"${name}" is ${megabytes(blob.size)}; the service accepts ` +
        `files up to ${megabytes(maxUploadBytes)}`);
      return;
    }
    state.image = { blob, name, sha256: null };
    analyse();
  }

  function megabytes(bytes) {
    return `${(bytes / 1048576).toFixed(1)} MB`;
  }

  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) chooseImage(file, file.name);
  });

  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) chooseImage(file, file.name);
  });
  // A file dropped beside the zone must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? [...event.clipboardData.items] : [];
    const item = items.find((entry) => entry.kind === "file");
    if (!item) return;
    event.preventDefault();
    const file = item.getAsFile();
    chooseImage(file, file.name || "pasted image");
  });

  // --- one image: prediction and explanations --------------------------------------------

  function clearResults() {
    state.prediction = null;
    state.explanations = [];
    $("result").hidden = true;
    $("answer").hidden = true;
    $("explanations").hidden = true;
    $("methods").replaceChildren();
    $("cell-box").hidden = true;
    $("cell-marks").replaceChildren();
    $("cell").replaceChildren(new Option("Main cell", "0"));
  }

  async function analyse() {
    const run = ++state.run;
    const image = state.image;
    const started = performance.now();
    clearResults();
    showPreview(image);
    setStatus(`Classifying and explaining ${image.name}…`, true);
    try {
      if (!state.model) await loadModel();
      const predicting = api("/predict", imageForm(image)).then((body) => {
        if (run === state.run) showPrediction(body);
      });
      const outcomes = await Promise.allSettled([predicting, explain(run)]);
      const failed = outcomes.find((outcome) => outcome.status === "rejected");
      if (failed) throw failed.reason;
      if (run !== state.run) return;
      setStatus(`Done in ${Math.round(performance.now() - started)} ms.`);
      document.body.dataset.state = "done";
    } catch (error) {
      if (run !== state.run) return;
      setStatus("");
      document.body.dataset.state = "error";
      if (!state.prediction) $("result").hidden = true; // nothing to show beside the message
      handleError(error, analyse);
    }
  }

  function showPreview(image) {
    const preview = $("preview");
    if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
    preview.onload = () => drawCellBox();
    const frame = preview.parentElement;
    frame.hidden = false;
    preview.onerror = () => {
      frame.hidden = true; // not a picture this browser can show
    };
    preview.src = URL.createObjectURL(image.blob);
    preview.alt = `The chosen smear: ${image.name}`;
    $("preview-caption").textContent = `${image.name}, ${(image.blob.size / 1024).toFixed(0)} KB`;
    $("result").hidden = false;
    document.body.dataset.state = "busy";
  }

  function showPrediction(body) {
    const prediction = body.predictions[0];
    state.prediction = { model: body.model, ...prediction };
    $("label").textContent = prediction.label;
    $("target").options[0].text = `Predicted class (${prediction.label})`;
    const calibrated = prediction.calibrated_confidence;
    $("confidence").textContent = `Confidence ${percent(prediction.confidence)}` + (
      calibrated == null ? " (no calibration for this model)."
        : `; calibrated confidence ${percent(calibrated)}.`);
    const scale = prediction.scale;
    $("scale").textContent = scale == null ? "" : `Scale ${scale.um_per_px.toPrecision(3)} µm per ` +
      `pixel, ${SCALE_SOURCES[scale.source] || scale.source}.`;
    const cells = prediction.cells || [];
    const chooser = $("cell");
    const chosen = chooser.value;
    chooser.replaceChildren(...(cells.length ? cells : [prediction]).map((cell, index) =>
      new Option(`Cell ${index + 1}: ${cell.label}` + (index === 0 ? " (main)" : ""), String(index))));
    chooser.value = chosen < chooser.options.length ? chosen : "0";
    showReview(prediction);
    const ood = $("ood");
    ood.hidden = prediction.in_distribution !== false;
    ood.textContent = prediction.in_distribution === false
      ? "Warning: out of distribution.\n" + (prediction.ood_reason
        ? capitalise(prediction.ood_reason)
        : "This image does not look like the stained smears the model was trained on; treat " +
          "this prediction with suspicion.")
      : "";
    const bars = $("probabilities");
    bars.replaceChildren();
    for (const [label, probability] of Object.entries(prediction.probabilities)) {
      const row = document.createElement("li");
      row.classList.toggle("top", label === prediction.label);
      const name = document.createElement("span");
      name.textContent = label;
      const track = document.createElement("span");
      track.className = "track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = `${(probability * 100).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = percent(probability);
      row.append(name, track, value);
      bars.append(row);
    }
    $("answer").hidden = false;
    drawCellBox();
  }

  // Whether a person should look at the answer, and why, in the model's own words (/models).
  function showReview(prediction) {
    const box = $("review");
    const review = (state.model && state.model.review) || { reasons: {} };
    const reasons = prediction.review_reasons || [];
    box.hidden = prediction.review === undefined;
    box.classList.toggle("flagged", Boolean(prediction.review));
    const lines = prediction.review
      ? ["Review recommended: a person should look at this cell.",
        ...reasons.map((reason) => `• ${capitalise(review.reasons[reason] || reason)}`)]
      : ["No review needed: every check passed."];
    box.replaceChildren(lines.join("\n"));
    if (review.min_calibrated_confidence != null) {
      const note = document.createElement("small");
      note.textContent = `Answers below ${percent(review.min_calibrated_confidence)} calibrated ` +
        `confidence go to review; on held-out smears that accepts ` +
        `${percent(review.expected_coverage)} of answers, ${percent(review.expected_accuracy)} ` +
        "of them right.";
      box.append(note);
    }
  }

  const SCALE_SOURCES = {
    given: "as given",
    measured: "measured from the red cells",
    assumed: "assumed (no red cells to measure it by)",
  };

  function percent(probability) {
    return `${(probability * 100).toFixed(1)}%`;
  }

  // The model's box around the white cell, in the uploaded image's pixels, when it gives one.
  // The box of the cell chosen for explaining (the main cell's by default), as /predict
  // gave it, else as the explanation did.
  function cellBox() {
    const prediction = state.prediction;
    const first = state.explanations[0];
    const index = Number($("cell").value || 0);
    const cells = (prediction && prediction.cells) || [];
    if (index === 0 && prediction && prediction.cell_box) return prediction.cell_box;
    if (cells[index]) return cells[index].cell_box;
    return (first && first.cell_box) || null;
  }

  // Every cell found, with its label; clicking one explains it.
  function drawCellMarks() {
    const preview = $("preview");
    const marks = $("cell-marks");
    const width = preview.naturalWidth;
    const height = preview.naturalHeight;
    const cells = (state.prediction && state.prediction.cells) || [];
    marks.replaceChildren();
    if (!width || !height || cells.length < 2) return;
    cells.forEach((cell, index) => {
      const [x0, y0, x1, y1] = cell.cell_box;
      const mark = document.createElement("button");
      mark.type = "button";
      mark.className = "cell-mark";
      mark.dataset.index = String(index);
      Object.assign(mark.style, {
        left: `${(100 * x0) / width}%`, top: `${(100 * y0) / height}%`,
        width: `${(100 * (x1 - x0)) / width}%`, height: `${(100 * (y1 - y0)) / height}%`,
      });
      const label = document.createElement("span");
      label.textContent = `${index + 1}: ${cell.label}`;
      mark.append(label);
      mark.setAttribute("aria-label", `Explain cell ${index + 1}, ${cell.label}`);
      mark.addEventListener("click", () => {
        $("cell").value = String(index);
        refreshExplanations();
      });
      marks.append(mark);
    });
  }

  function drawCellBox() {
    drawCellMarks();
    const box = cellBox();
    const preview = $("preview");
    const element = $("cell-box");
    const width = preview.naturalWidth;
    const height = preview.naturalHeight;
    if (!Array.isArray(box) || box.length !== 4 || !width || !height) {
      element.hidden = true;
      return;
    }
    const [x0, y0, x1, y1] = box;
    Object.assign(element.style, {
      left: `${(100 * x0) / width}%`, top: `${(100 * y0) / height}%`,
      width: `${(100 * (x1 - x0)) / width}%`, height: `${(100 * (y1 - y0)) / height}%`,
    });
    element.title = `Cell box: ${box.join(", ")}`;
    element.hidden = false;
    preview.alt = `The chosen smear: ${state.image.name}, with the model's cell box drawn`;
  }

  // --- explanations -----------------------------------------------------------------------

  function explainParams() {
    return {
      target: $("target").value,
      alpha: Number($("alpha").value),
      threshold: Number($("threshold").value),
      colormap: $("colormap").value,
      cell: Number($("cell").value || 0),
    };
  }

  // Every method for the current image in one request (/explain?method=all: one decode, one
  // model pass per layer); answers of an older run or older settings are dropped.
  async function explain(run) {
    const explainRun = ++state.explainRun;
    const params = explainParams();
    const query = new URLSearchParams({ method: "all", output: "both", alpha: params.alpha,
      threshold: params.threshold, colormap: params.colormap });
    if (params.target) query.set("target", params.target);
    if (params.cell) query.set("cell", String(params.cell));
    const started = performance.now();
    const body = await api(`/explain?${query}`, imageForm(state.image));
    if (run !== state.run || explainRun !== state.explainRun) return;
    const shared = { model: body.model, prediction: body.prediction, target: body.target,
      image_size: body.image_size, cell_box: body.cell_box };
    state.explanations = body.explanations.map((entry) => ({ ...shared, ...entry }));
    state.explainParams = params;
    state.explainTiming = { request_ms: performance.now() - started, passes_ms: body.passes_ms };
    showExplanations();
  }

  function showExplanations() {
    drawCellBox();
    const view = document.querySelector('input[name="view"]:checked').value;
    const list = $("methods");
    list.replaceChildren();
    list.classList.remove("stale");
    for (const explanation of state.explanations) list.append(methodFigure(explanation, view));
    const target = state.explanations[0].target;
    const predicted = state.explanations[0].prediction.label;
    const timing = state.explainTiming;
    $("explain-target").textContent = `Explaining ${target.label}` +
      (target.label === predicted ? " (the predicted class)" : ` (the model predicted ${predicted})`) +
      `, probability ${percent(target.probability)}. All ${state.explanations.length} methods ` +
      `in one request: ${Math.round(timing.request_ms)} ms, of which ` +
      `${Math.round(timing.passes_ms)} ms decoding and model passes they share; each ` +
      "method's own time is under its picture.";
    $("explanations").hidden = false;
    drawCellBox();
  }

  function methodFigure(explanation, view) {
    const name = METHOD_NAMES[explanation.method] || explanation.method;
    const png = view === "heatmap" ? explanation.heatmap_png : explanation.overlay_png;
    const picture = view === "heatmap" ? "heat map" : "heat map over the smear";
    const item = document.createElement("li");
    item.dataset.method = explanation.method;
    const figure = document.createElement("figure");
    const enlarge = document.createElement("button");
    enlarge.type = "button";
    enlarge.className = "enlarge";
    enlarge.setAttribute("aria-label", `Enlarge the ${name} picture`);
    const image = document.createElement("img");
    image.src = `data:image/png;base64,${png}`;
    image.alt = `${name} (${explanation.method}) ${picture} for ${explanation.target.label}, ` +
      `layer ${explanation.layer}`;
    image.dataset.method = explanation.method;
    enlarge.append(image);
    enlarge.addEventListener("click", () => zoom(image, `${name}: ${explanation.target.label}, ` +
      `layer ${explanation.layer}`, enlarge));
    const caption = document.createElement("figcaption");
    const title = document.createElement("span");
    title.className = "name";
    title.textContent = `${name} (${explanation.method})`;
    const details = document.createElement("span");
    details.className = "meta";
    details.textContent = `Layer ${explanation.layer}, ${Math.round(explanation.latency_ms)} ms ` +
      "of its own";
    const download = document.createElement("a");
    download.href = `data:image/png;base64,${explanation.overlay_png}`;
    download.download = `${baseName()}-${explanation.method}-${explanation.target.label}.png`;
    download.textContent = "Download overlay PNG";
    download.setAttribute("aria-label", `Download the ${name} overlay as PNG`);
    caption.append(title, details, download);
    figure.append(enlarge, caption);
    item.append(figure);
    return item;
  }

  function baseName() {
    return state.image.name.replace(/\.[^.]+$/, "").replace(/[^\w.-]+/g, "_") || "smear";
  }

  async function refreshExplanations() {
    if (!state.image || !state.prediction) return;
    const run = state.run;
    hideError();
    $("methods").classList.add("stale");
    setStatus("Updating the explanations…", true);
    document.body.dataset.state = "busy";
    try {
      await explain(run);
      if (run !== state.run) return;
      setStatus("Explanations updated.");
      document.body.dataset.state = "done";
    } catch (error) {
      if (run !== state.run) return;
      setStatus("");
      document.body.dataset.state = "error";
      handleError(error, refreshExplanations);
    }
  }

  function scheduleRefresh() {
    clearTimeout(state.controlTimer);
    state.controlTimer = setTimeout(refreshExplanations, CONTROL_DELAY_MS);
  }

  for (const id of ["target", "cell", "alpha", "threshold", "colormap"]) {
    $(id).addEventListener("change", scheduleRefresh);
  }
  for (const id of ["alpha", "threshold"]) {
    $(id).addEventListener("input", () => {
      $(`${id}-value`).textContent = Number($(id).value).toFixed(2);
    });
  }
  for (const radio of document.querySelectorAll('input[name="view"]')) {
    radio.addEventListener("change", () => {
      if (state.explanations.length) showExplanations();
    });
  }
  $("controls").addEventListener("submit", (event) => event.preventDefault());

  // --- enlarge and downloads --------------------------------------------------------------

  function zoom(image, title, opener) {
    const dialog = $("zoom");
    $("zoom-title").textContent = title;
    $("zoom-image").src = image.src;
    $("zoom-image").alt = image.alt;
    dialog.onclose = () => opener.focus();
    dialog.showModal();
  }

  $("zoom").addEventListener("click", (event) => {
    if (event.target === $("zoom")) $("zoom").close(); // a click on the backdrop
  });

  async function sha256(blob) {
    if (!window.crypto || !crypto.subtle) return null; // only in secure contexts
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  async function auditRecord() {
    const image = state.image;
    if (image.sha256 === null) image.sha256 = await sha256(image.blob);
    const prediction = state.prediction;
    const first = state.explanations[0];
    return {
      record: "wbc-explain audit record",
      notice: "Research tool, not a diagnosis.",
      created_at: new Date().toISOString(),
      service: window.location.origin,
      model: prediction.model,
      image: {
        file_name: image.name, bytes: image.blob.size, sha256: image.sha256,
        size: first ? first.image_size : null,
      },
      parameters: { ...state.explainParams, output: "both",
        methods: state.explanations.map((e) => e.method) },
      prediction: {
        label: prediction.label, confidence: prediction.confidence,
        calibrated_confidence: prediction.calibrated_confidence,
        in_distribution: prediction.in_distribution, ood_distance: prediction.ood_distance,
        ood_reason: prediction.ood_reason, cell_box: cellBox(),
        probabilities: prediction.probabilities,
      },
      timing_ms: { request: Math.round(state.explainTiming.request_ms),
        shared_passes: Math.round(state.explainTiming.passes_ms) },
      explanations: state.explanations.map((e) => ({
        method: e.method, layer: e.layer, target: e.target,
        own_latency_ms: Math.round(e.latency_ms),
      })),
    };
  }

  $("audit").addEventListener("click", async () => {
    if (!state.prediction || !state.explanations.length) return;
    const record = await auditRecord();
    const blob = new Blob([JSON.stringify(record, null, 2) + "\n"], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${baseName()}-audit.json`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });

  loadExamples();
  start();
})();
