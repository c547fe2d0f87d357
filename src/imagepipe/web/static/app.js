// The upload page: plain JS, no build step, talks only to the API that served it.
"use strict";

(() => {
  const KEY_STORAGE = "imagepipe.apiKey";
  const RETRY_DELAY_MS = 2000;
  const MAX_STREAM_FAILURES = 30;
  const RECENT_PAGE_SIZE = 10;
  const DONE = new Set(["succeeded", "failed"]);
  const STATUS_LABELS = {
    uploading: "Uploading",
    queued: "Queued",
    processing: "Processing",
    succeeded: "Done",
    failed: "Failed",
    rejected: "Rejected",
  };

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // --- tiny DOM helper: text always goes through textContent, never innerHTML ---
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function announce(text) {
    const region = $("announcer");
    region.textContent = "";
    // A fresh text node after a tick makes screen readers repeat identical messages.
    setTimeout(() => { region.textContent = text; }, 50);
  }

  function formatBytes(n) {
    if (n < 1000) return `${n} B`;
    if (n < 1000 * 1000) return `${(n / 1000).toFixed(1)} kB`;
    return `${(n / 1000 / 1000).toFixed(1)} MB`;
  }

  // --- the API -------------------------------------------------------------
  function apiKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return "";
    }
  }

  function authHeaders() {
    const key = apiKey();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // Every error of the service has the shape {"error": {"code", "message"}}.
  function errorFrom(status, body) {
    const error = body && typeof body === "object" ? body.error : null;
    if (error && error.code) return new ApiError(status, error.code, error.message || "");
    return new ApiError(status, `http_${status}`, `The service answered HTTP ${status}.`);
  }

  async function getJson(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() } });
    } catch {
      throw new ApiError(0, "network_error", "Could not reach the service.");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw errorFrom(response.status, body);
    return body;
  }

  // The `status` events of a text/event-stream answer, parsed as they arrive.
  async function* followTask(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "text/event-stream", ...authHeaders() } });
    } catch {
      throw new ApiError(0, "network_error", "Could not reach the service.");
    }
    if (!response.ok) throw errorFrom(response.status, await response.json().catch(() => null));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data = [];
    try {
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch {
          throw new ApiError(0, "network_error", "The status stream was cut.");
        }
        if (chunk.done) return;
        buffer += chunk.value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            if (event === "status" && data.length) yield JSON.parse(data.join("\n"));
            event = "message";
            data = [];
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = value;
            else if (field === "data") data.push(value);
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // Variants need the API key too, which an <img src> cannot send: fetch them then.
  async function showImage(img, link, url) {
    const key = apiKey();
    if (!key) {
      img.src = url;
      if (link) link.href = url;
      return;
    }
    try {
      const response = await fetch(url, { headers: authHeaders() });
      if (!response.ok) return;
      const objectUrl = URL.createObjectURL(await response.blob());
      img.src = objectUrl;
      if (link) link.href = objectUrl;
    } catch {
      // The caption still shows the sizes; a missing picture is not worth an alert.
    }
  }

  // The API lists variants in the configured order; keep it.
  function orderedVariants(task) {
    return Object.entries(task.variants || {});
  }

  // --- one upload ------------------------------------------------------------
  class Upload {
    constructor(file) {
      this.file = file;
      this.status = "uploading";
      this.badge = h("span", { class: "badge", "data-status": "uploading", text: "Uploading" });
      this.progress = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
      this.detail = h("p", { class: "detail", text: `0 of ${formatBytes(file.size)}` });
      this.error = h("p", { class: "error", hidden: true });
      this.previews = h("div", { class: "previews" });
      this.node = h(
        "li",
        { class: "upload", "data-status": "uploading" },
        h("div", { class: "upload-head" }, h("span", { class: "name", text: file.name }), this.badge),
        this.progress,
        this.detail,
        this.error,
        this.previews,
      );
    }

    setStatus(status, detail) {
      const changed = status !== this.status;
      this.status = status;
      this.node.dataset.status = status;
      this.badge.dataset.status = status;
      this.badge.textContent = STATUS_LABELS[status] || status;
      if (detail !== undefined) this.detail.textContent = detail;
      if (changed) announce(`${this.file.name}: ${STATUS_LABELS[status] || status}`);
    }

    showError(error, status = "rejected") {
      this.progress.hidden = true;
      this.error.hidden = false;
      this.error.replaceChildren(
        h("span", { class: "message", text: error.message || "Unknown error." }),
        " ",
        h("code", { class: "code", text: error.code }),
      );
      this.setStatus(status, status === "rejected" ? "The service refused this file." : "");
      announce(`${this.file.name}: ${error.message} (${error.code})`);
    }

    send() {
      return new Promise((resolve) => {
        const xhr = new XMLHttpRequest();
        const form = new FormData();
        form.append("file", this.file, this.file.name);
        xhr.open("POST", "/upload");
        xhr.responseType = "json";
        xhr.setRequestHeader("Accept", "application/json");
        for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
        xhr.upload.addEventListener("progress", (event) => {
          if (!event.lengthComputable) return;
          this.progress.value = Math.round((event.loaded / event.total) * 100);
          this.detail.textContent =
            `${formatBytes(Math.min(event.loaded, this.file.size))} of ${formatBytes(this.file.size)}`;
        });
        xhr.upload.addEventListener("load", () => {
          this.progress.value = 100;
          this.detail.textContent = "Sent; waiting for the service…";
        });
        xhr.addEventListener("load", () => {
          if (xhr.status === 202 && xhr.response && xhr.response.task_id) {
            resolve(xhr.response);
          } else {
            this.showError(errorFrom(xhr.status, xhr.response));
            resolve(null);
          }
        });
        xhr.addEventListener("error", () => {
          this.showError(new ApiError(0, "network_error", "The upload did not reach the service."));
          resolve(null);
        });
        xhr.send(form);
      });
    }

    async run() {
      const accepted = await this.send();
      if (!accepted) return;
      this.taskId = accepted.task_id;
      this.node.dataset.taskId = accepted.task_id;
      this.progress.hidden = true;
      this.setStatus("queued", `Task ${accepted.task_id}`);
      recent.reload();
      await this.watch(accepted.status_url || `/tasks/${accepted.task_id}`);
      recent.reload();
    }

    // Follows GET /tasks/{id}/events (Server-Sent Events). fetch(), not EventSource:
    // EventSource cannot send the Authorization header an API key needs.
    async watch(statusUrl) {
      let failures = 0;
      for (;;) {
        try {
          for await (const task of followTask(`${statusUrl}/events`)) {
            failures = 0;
            this.setStatus(task.status, `Task ${task.task_id}`);
            if (task.status === "succeeded") {
              this.showPreviews(task);
              return;
            }
            if (task.status === "failed") {
              this.showError(task.error || { code: "internal_error", message: "Processing failed." }, "failed");
              return;
            }
          }
          throw new ApiError(0, "stream_ended", "The status stream ended early.");
        } catch (error) {
          // Transient trouble (network, 5xx, a cut stream): open it again for a while.
          const transient = error.status === 0 || error.status >= 500;
          failures += 1;
          if (!transient || failures > MAX_STREAM_FAILURES) {
            this.showError(error, "failed");
            return;
          }
          this.detail.textContent = `Lost contact with the service (${error.code}); retrying…`;
          await sleep(RETRY_DELAY_MS);
        }
      }
    }

    showPreviews(task) {
      const figures = orderedVariants(task).map(([name, variant]) => {
        const img = h("img", {
          alt: `${name} preview of ${this.file.name}`,
          width: variant.width,
          height: variant.height,
          decoding: "async",
        });
        const link = h("a", { class: "preview-link", target: "_blank", rel: "noopener" }, img);
        showImage(img, link, variant.url);
        return h(
          "figure",
          { class: "preview", "data-variant": name },
          link,
          h(
            "figcaption",
            {},
            h("span", { class: "variant-name", text: name }),
            " ",
            h("span", { class: "dims", text: `${variant.width} × ${variant.height} px` }),
            " ",
            h("span", { class: "bytes muted", text: formatBytes(variant.size_bytes) }),
          ),
        );
      });
      this.previews.replaceChildren(...figures);
    }
  }

  function uploadAll(files) {
    const uploads = Array.from(files, (file) => new Upload(file));
    $("uploads").prepend(...uploads.map((upload) => upload.node)); // newest batch on top
    for (const upload of uploads) upload.run();
  }

  // --- recent tasks ----------------------------------------------------------
  const recent = {
    cursor: null,
    generation: 0,

    async load({ reset }) {
      const generation = reset ? ++this.generation : this.generation;
      const params = new URLSearchParams({ limit: String(RECENT_PAGE_SIZE) });
      const status = $("status-filter").value;
      if (status) params.set("status", status);
      if (!reset && this.cursor) params.set("cursor", this.cursor);
      const errorBox = $("recent-error");
      let page;
      try {
        page = await getJson(`/tasks?${params}`);
      } catch (error) {
        if (generation !== this.generation) return;
        errorBox.hidden = false;
        errorBox.textContent = `${error.message} (${error.code})`;
        if (error.status === 401) {
          errorBox.textContent += " Paste an API key above.";
          $("key-panel").open = true;
        }
        return;
      }
      if (generation !== this.generation) return; // a newer reload superseded this one
      errorBox.hidden = true;
      const list = $("recent");
      if (reset) list.replaceChildren();
      for (const task of page.tasks) list.append(taskRow(task));
      this.cursor = page.next_cursor;
      $("more").hidden = !page.next_cursor;
      $("recent-empty").hidden = list.children.length > 0;
    },

    reload() {
      return this.load({ reset: true });
    },
  };

  function taskRow(task) {
    const small = orderedVariants(task)[0];
    const thumb = h("span", { class: "thumb", "aria-hidden": "true" });
    if (small) {
      const img = h("img", { alt: "", width: small[1].width, height: small[1].height });
      thumb.append(img);
      showImage(img, null, small[1].url);
    }
    const original = task.original;
    const created = new Date(task.created_at);
    const facts = `${original.format} ${original.width} × ${original.height}, ${formatBytes(original.size_bytes)}`;
    return h(
      "li",
      { class: "task", "data-task-id": task.task_id, "data-status": task.status },
      thumb,
      h(
        "div",
        { class: "task-body" },
        h(
          "div",
          { class: "upload-head" },
          h("span", { class: "name", text: original.filename }),
          h("span", { class: "badge", "data-status": task.status, text: STATUS_LABELS[task.status] || task.status }),
        ),
        h(
          "p",
          { class: "detail" },
          h("time", { datetime: task.created_at, text: created.toLocaleString() }),
          ` · ${facts}`,
        ),
        task.error
          ? h("p", { class: "error" }, h("span", { class: "message", text: task.error.message }), " ",
              h("code", { class: "code", text: task.error.code }))
          : null,
        h("p", { class: "task-id muted", text: task.task_id }),
      ),
    );
  }

  // --- wiring ----------------------------------------------------------------
  function showKeyState() {
    $("key-state").textContent = apiKey() ? "(set)" : "(none set)";
  }

  function init() {
    const input = $("file-input");
    const zone = $("drop-zone");

    input.addEventListener("change", () => {
      uploadAll(Array.from(input.files));
      input.value = ""; // choosing the same files again uploads them again
    });

    zone.addEventListener("click", () => input.click());
    zone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault(); // Space would scroll the page
        input.click();
      }
    });
    zone.addEventListener("dragenter", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", (event) => {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("over");
    });
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      uploadAll(Array.from(event.dataTransfer.files));
    });
    // A file dropped beside the zone must not make the browser navigate away.
    for (const type of ["dragover", "drop"]) {
      window.addEventListener(type, (event) => event.preventDefault());
    }

    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("api-key").value.trim();
      try {
        if (value) localStorage.setItem(KEY_STORAGE, value);
        else localStorage.removeItem(KEY_STORAGE);
      } catch {
        // Private mode without storage: the key is simply not remembered.
      }
      $("api-key").value = "";
      showKeyState();
      announce(value ? "API key saved." : "API key removed.");
      recent.reload();
    });
    $("key-clear").addEventListener("click", () => {
      try {
        localStorage.removeItem(KEY_STORAGE);
      } catch {
        // nothing stored
      }
      showKeyState();
      announce("API key removed.");
      recent.reload();
    });

    $("more").addEventListener("click", () => recent.load({ reset: false }));
    $("refresh").addEventListener("click", () => recent.reload());
    $("status-filter").addEventListener("change", () => recent.reload());

    showKeyState();
    recent.reload();
  }

  init();
})();
