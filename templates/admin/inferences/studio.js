// The Generate studio: posts the form for JSON and stays on the page, showing the job's live preview, progress,
// Cancel, then its pictures and infotexts; Ctrl+Enter generates; LoRA/embedding pickers; the inpainting canvas;
// PNG Info (a dropped picture's A1111 parameters fill the form). Without this script the form posts as a plain form.
(function () {
  "use strict";
  const form = document.getElementById("generate-form");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const csrf = () => form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const output = $("esd-output"), statusText = $("esd-status-text"), bar = $("esd-progress");
  const cancelButton = $("esd-cancel"), jobLink = $("esd-job-link"), preview = $("esd-preview");
  const results = $("esd-results"), submit = $("generate-submit");
  let polling = null;

  // --- errors ---------------------------------------------------------------------------------------------------
  function showErrors(errors) {
    form.querySelectorAll("ul.errorlist[data-for]").forEach((list) => { list.hidden = true; list.replaceChildren(); });
    const general = $("esd-form-errors");
    general.hidden = true;
    general.textContent = "";
    for (const [name, problems] of Object.entries(errors || {})) {
      const list = form.querySelector(`ul.errorlist[data-for="${name}"]`);
      const messages = problems.map((problem) => problem.message);
      if (list) {
        list.hidden = false;
        for (const message of messages) { const item = document.createElement("li"); item.textContent = message; list.append(item); }
        const section = list.closest("details");
        if (section) section.open = true;
      } else {
        general.hidden = false;
        general.textContent += (general.textContent ? " " : "") + messages.join(" ");
      }
    }
  }

  // --- the job on the right ---------------------------------------------------------------------------------------
  function figure(url, name, detected) {
    const item = document.createElement("figure"), link = document.createElement("a"), image = new Image();
    link.href = url;
    link.target = "_blank";  // full size
    image.src = url;
    image.alt = name;
    image.className = detected ? "esd-detected-map" : "esd-image";
    link.append(image);
    const caption = document.createElement("figcaption");
    caption.className = "help";
    caption.textContent = detected ? `${name}: ControlNet detected map` : name;
    item.append(link, caption);
    return item;
  }

  function finish(job) {
    bar.hidden = true;
    cancelButton.hidden = true;
    preview.hidden = !job.preview;
    statusText.textContent = job.error ? `${job.status}: ${job.error}` : job.status;
    results.replaceChildren(
      ...job.images.map((url, index) => figure(url, job.names[index], index >= job.pictures)),
      ...job.infotexts.slice(0, 4).map((text) => {
        const block = document.createElement("pre");
        block.className = "esd-infotext";
        block.textContent = text;
        return block;
      }),
    );
    output.dataset.state = "finished";
  }

  async function poll(links) {
    const answer = await fetch(links.progress_url, {credentials: "same-origin"});
    if (answer.ok) {
      const job = await answer.json();
      if (job.job !== output.dataset.job) return;  // a newer job took the panel
      if (job.finished) { finish(job); return; }
      statusText.textContent = `${job.status} ${job.step}/${job.total || "?"}`;
      bar.value = Math.round(job.progress * 100);
      if (job.preview && preview.src !== job.preview) {
        preview.src = job.preview;
        preview.hidden = false;
        preview.dataset.updates = String(Number(preview.dataset.updates || 0) + 1);
      }
    }
    polling = setTimeout(() => poll(links), 400);
  }

  function follow(links) {
    clearTimeout(polling);
    output.dataset.job = links.job;
    output.dataset.state = "running";
    preview.dataset.updates = "0";
    preview.hidden = true;
    preview.removeAttribute("src");
    results.replaceChildren();
    statusText.textContent = "queued";
    bar.hidden = false;
    bar.value = 0;
    cancelButton.hidden = false;
    cancelButton.dataset.url = links.cancel_url;
    jobLink.hidden = false;
    jobLink.href = links.page_url;
    polling = setTimeout(() => poll(links), 200);
  }

  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    const body = new FormData();
    body.append("csrfmiddlewaretoken", csrf());
    await fetch(cancelButton.dataset.url, {method: "POST", body, credentials: "same-origin"});
    cancelButton.disabled = false;
    statusText.textContent = "cancelling";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    exportMask();
    submit.disabled = true;
    let answer;
    try {
      answer = await fetch(form.action || window.location.pathname, {
        method: "POST", body: new FormData(form), credentials: "same-origin", headers: {Accept: "application/json"},
      });
    } catch (error) {
      showErrors({__all__: [{message: `The server did not answer (${error}).`}]});
      submit.disabled = false;
      return;
    }
    const data = await answer.json().catch(() => ({errors: {__all__: [{message: `The server answered ${answer.status}.`}]}}));
    if (!answer.ok) { showErrors(data.errors); submit.disabled = false; return; }
    showErrors({});
    submit.disabled = false;  // another job may be queued at once; the panel follows the newest
    follow(data);
  });

  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
  });

  // --- task: image to image's section shows for img2img ----------------------------------------------------------
  const task = $("id_task"), img2img = $("esd-img2img");
  const showTask = () => { img2img.hidden = task.value !== "img2img"; };
  task.addEventListener("change", showTask);
  showTask();

  // --- LoRA and embedding pickers ---------------------------------------------------------------------------------
  let target = $("id_prompt");
  for (const id of ["id_prompt", "id_negative_prompt"]) $(id).addEventListener("focus", () => { target = $(id); });
  const search = $("esd-network-search");
  if (search) {
    search.addEventListener("input", () => {
      const needle = search.value.trim().toLowerCase();
      document.querySelectorAll(".esd-network").forEach((button) => {
        button.hidden = needle !== "" && !button.dataset.name.toLowerCase().includes(needle);
      });
    });
  }
  document.querySelectorAll(".esd-network").forEach((button) => {
    button.addEventListener("click", () => {
      const weight = Number($("esd-network-weight").value || 1);
      const name = button.dataset.name;
      // A1111's tags: <lora:name:weight>; an embedding by its name, weighted with (name:weight)
      const tag = button.dataset.kind === "lora" ? `<lora:${name}:${weight}>` : (weight === 1 ? name : `(${name}:${weight})`);
      const start = target.selectionStart ?? target.value.length, end = target.selectionEnd ?? start;
      const before = target.value.slice(0, start), after = target.value.slice(end);
      const spaced = (before && !/[\s,]$/.test(before) ? ", " : "") + tag + (after && !/^[\s,]/.test(after) ? ", " : "");
      target.value = before + spaced + after;
      target.focus();
      target.selectionStart = target.selectionEnd = before.length + spaced.length;
    });
  });

  // --- inpainting canvas ------------------------------------------------------------------------------------------
  const canvasBox = $("esd-canvas"), canvas = $("esd-mask-canvas"), initPreview = $("esd-init-preview");
  const brush = $("esd-brush"), eraser = $("esd-eraser"), mask = $("id_mask");
  const context = canvas.getContext("2d");
  let painted = false;
  $("id_init_image").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (!file) { canvasBox.hidden = true; return; }
    initPreview.onload = () => {
      canvas.width = initPreview.naturalWidth;
      canvas.height = initPreview.naturalHeight;
      context.clearRect(0, 0, canvas.width, canvas.height);
      painted = false;
      canvasBox.hidden = false;
    };
    initPreview.src = URL.createObjectURL(file);
  });
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  let last = null;
  function stroke(event) {
    const [x, y] = at(event);
    const scale = canvas.width / canvas.getBoundingClientRect().width;
    context.globalCompositeOperation = eraser.getAttribute("aria-pressed") === "true" ? "destination-out" : "source-over";
    context.strokeStyle = context.fillStyle = "#ffffff";
    context.lineWidth = Number(brush.value) * scale;
    context.lineCap = "round";
    context.beginPath();
    context.moveTo(...(last || [x, y]));
    context.lineTo(x, y);
    context.stroke();
    last = [x, y];
    painted = true;
  }
  canvas.addEventListener("pointerdown", (event) => { canvas.setPointerCapture(event.pointerId); last = null; stroke(event); });
  canvas.addEventListener("pointermove", (event) => { if (event.buttons) stroke(event); });
  canvas.addEventListener("pointerup", () => { last = null; });
  eraser.addEventListener("click", () => {
    eraser.setAttribute("aria-pressed", eraser.getAttribute("aria-pressed") === "true" ? "false" : "true");
  });
  $("esd-clear").addEventListener("click", () => { context.clearRect(0, 0, canvas.width, canvas.height); painted = false; });
  $("esd-invert").addEventListener("click", () => {
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    for (let index = 0; index < pixels.data.length; index += 4) {
      const on = pixels.data[index + 3] >= 128;
      pixels.data.set(on ? [0, 0, 0, 0] : [255, 255, 255, 255], index);
    }
    context.putImageData(pixels, 0, 0);
    painted = true;
  });
  // The mask as ESD clients send it: the init picture's size, white where painted, black elsewhere
  function exportMask() {
    if (task.value !== "img2img" || canvasBox.hidden || !painted) { mask.value = ""; return; }
    const flat = document.createElement("canvas");
    flat.width = canvas.width;
    flat.height = canvas.height;
    const paint = flat.getContext("2d");
    paint.fillStyle = "#000000";
    paint.fillRect(0, 0, flat.width, flat.height);
    paint.drawImage(canvas, 0, 0);
    mask.value = flat.toDataURL("image/png");
  }

  // --- PNG Info: a picture's A1111 parameters fill the form -----------------------------------------------------------
  const drop = $("esd-drop"), report = $("esd-png-info-report");
  async function readParameters(file) {
    const body = new FormData();
    body.append("image", file);
    const answer = await fetch(form.dataset.pngInfo, {
      method: "POST", body, credentials: "same-origin", headers: {"X-CSRFToken": csrf()},
    });
    const data = await answer.json();
    report.hidden = false;
    if (!answer.ok) { report.textContent = data.error; return; }
    for (const [name, value] of Object.entries(data.values)) {
      const field = $(`id_${name}`);
      if (!field) continue;
      if (field.type === "checkbox") field.checked = Boolean(value);
      else field.value = String(value);
      field.dispatchEvent(new Event("change", {bubbles: true}));
    }
    if (data.values.enable_hr) document.querySelectorAll("details.esd-section").forEach((section) => {
      if (section.querySelector("#id_enable_hr")) section.open = true;
    });
    report.textContent = data.unmapped.length
      ? `Filled from the picture. Not on this form: ${data.unmapped.join("; ")}`
      : "Filled from the picture; every field was used.";
    report.dataset.unmapped = String(data.unmapped.length);
  }
  $("esd-png-info").addEventListener("change", (event) => { if (event.target.files[0]) readParameters(event.target.files[0]); });
  for (const name of ["dragenter", "dragover"]) drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("esd-over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("esd-over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("esd-over");
    if (event.dataTransfer.files[0]) readParameters(event.dataTransfer.files[0]);
  });
})();
