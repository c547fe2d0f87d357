// The upload page: plain JS, no build step, talks only to the API that served it.
"use strict";

(() => {
  const KEY_STORAGE = "imagepipe.apiKey";
  const RETRY_DELAY_MS = 2000;
  const MAX_STREAM_FAILURES = 30;
  // A 429 (this key's limits) or a 503 (busy, a backend down) says when to come back
  // (Retry-After): a call that creates work is tried this often, waiting as asked.
  const COME_BACK = new Set([429, 503]);
  const ATTEMPTS = 3;
  const MAX_RETRY_AFTER_MS = 30000;
  const RECENT_PAGE_SIZE = 10;
  const DONE = new Set(["succeeded", "failed"]);
  const STATUS_LABELS = {
    uploading: "Uploading",
    awaiting_upload: "Awaiting upload",
    queued: "Queued",
    processing: "Processing",
    succeeded: "Done",
    failed: "Failed",
    rejected: "Rejected",
  };

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // Headers a page may not set itself; the browser sends the right ones for the body.
  const FORBIDDEN_HEADERS = new Set(["content-length", "host", "connection"]);

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
    constructor(status, code, message, retryAfter = 0) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter; // seconds, from the Retry-After header
    }

    get comeBack() {
      return COME_BACK.has(this.status);
    }

    // How long to wait before asking again: as the service said, within bounds.
    get delayMs() {
      return Math.min(Math.max(this.retryAfter * 1000, 1000), MAX_RETRY_AFTER_MS);
    }
  }

  // Every error of the service has the shape {"error": {"code", "message"}}.
  function errorFrom(status, body, retryAfter) {
    const seconds = Number.parseFloat(retryAfter || "0") || 0;
    const error = body && typeof body === "object" ? body.error : null;
    if (error && error.code) return new ApiError(status, error.code, error.message || "", seconds);
    return new ApiError(status, `http_${status}`, `The service answered HTTP ${status}.`, seconds);
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

  // POST, asked again while the service answers 429 or 503 (after its Retry-After).
  async function postJson(path, body) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await postJsonOnce(path, body);
      } catch (error) {
        if (!error.comeBack || attempt >= ATTEMPTS) throw error;
        await sleep(error.delayMs);
      }
    }
  }

  async function postJsonOnce(path, body) {
    const headers = { Accept: "application/json", ...authHeaders() };
    if (body !== null) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers,
        body: body === null ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "network_error", "Could not reach the service.");
    }
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw errorFrom(response.status, answer, response.headers.get("Retry-After"));
    return answer;
  }

  function deleteTask(taskId) {
    fetch(`/tasks/${taskId}`, { method: "DELETE", headers: authHeaders() }).catch(() => {});
  }

  // Direct uploads (POST /uploads): tried first; once the service or this browser
  // turns out not to manage them, every later file goes through POST /upload.
  const directUploads = { available: null };
  const FALL_BACK = Symbol("fall back to POST /upload");

  // The `status` events of a text/event-stream answer, parsed as they arrive.
  async function* followTask(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "text/event-stream", ...authHeaders() } });
    } catch {
      throw new ApiError(0, "network_error", "Could not reach the service.");
    }
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw errorFrom(response.status, body, response.headers.get("Retry-After"));
    }
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

  // --- placeholder and report ------------------------------------------------
  // Until a preview's bytes arrive, its frame shows the task's dominant colour and
  // its ThumbHash (a blurred miniature, decoded by thumbhash.js); the picture covers
  // them once it has loaded.
  function paintPlaceholder(frame, img, placeholder) {
    if (!placeholder) return;
    frame.classList.add("placeholder");
    frame.dataset.dominantColor = placeholder.dominant_color;
    frame.style.backgroundColor = placeholder.dominant_color;
    try {
      const bytes = Uint8Array.from(atob(placeholder.thumbhash), (c) => c.charCodeAt(0));
      frame.style.backgroundImage = `url("${window.ThumbHash.thumbHashToDataURL(bytes)}")`;
    } catch {
      // The colour alone is placeholder enough.
    }
    img.addEventListener("load", () => frame.classList.add("loaded"), { once: true });
  }

  // What was done to the image: GET /tasks/{id} "report", as a definition list.
  function reportNode(report) {
    const source = report.source || {};
    const facts = [
      ["Source", [source.format, source.mode, source.bit_depth && `${source.bit_depth}-bit`,
                  source.frames > 1 && `${source.frames} frames`,
                  source.has_alpha && "transparency"].filter(Boolean).join(", ")],
      ["Orientation", source.orientation > 1 ? `EXIF ${source.orientation}` : "upright"],
      ["Colour profile", source.icc_profile || "none"],
      ["Applied", (report.applied || []).join(", ") || "nothing"],
      ["Metadata removed", (report.removed_metadata || []).join(", ") || "none"],
      ["Checks", `${report.qa && report.qa.passed ? "passed" : "failed"}: ` +
                 ((report.qa && report.qa.checks) || []).join(", ")],
      ["Timings", Object.entries(report.timings_ms || {})
        .map(([stage, ms]) => `${stage} ${ms} ms`).join(", ")],
    ];
    if (report.deduplicated_from) {
      facts.push(["Same image as", `task ${report.deduplicated_from} (previews copied)`]);
    }
    const list = h("dl", {});
    for (const [term, value] of facts) {
      list.append(h("dt", { text: term }), h("dd", { text: value }));
    }
    return h("details", { class: "report" }, h("summary", { text: "What was done" }), list);
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

    // One request whose body is this file, with upload progress. Resolves to
    // {status, response}; rejects (status 0) when nothing reached the other end.
    transfer(method, url, headers, body) {
      return new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        xhr.open(method, url);
        xhr.responseType = "json";
        for (const [name, value] of Object.entries(headers)) {
          if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
        }
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
          // Read only when it matters: another origin's answer (S3) does not expose it,
          // and asking logs an error in the console.
          const retryAfter = COME_BACK.has(xhr.status) ? xhr.getResponseHeader("Retry-After") : null;
          resolve({ status: xhr.status, response: xhr.response, retryAfter });
        });
        xhr.addEventListener("error", () => reject(new ApiError(0, "network_error", "The upload did not reach the service.")));
        xhr.send(body);
      });
    }

    // POST /upload: the bytes go through the API.
    async sendProxied() {
      const form = new FormData();
      form.append("file", this.file, this.file.name);
      for (let attempt = 1; ; attempt += 1) {
        let answer;
        try {
          answer = await this.transfer("POST", "/upload", { Accept: "application/json", ...authHeaders() }, form);
        } catch (error) {
          this.showError(error);
          return null;
        }
        if (answer.status === 202 && answer.response && answer.response.task_id) return answer.response;
        const error = errorFrom(answer.status, answer.response, answer.retryAfter);
        if (!error.comeBack || attempt >= ATTEMPTS) {
          this.showError(error);
          return null;
        }
        this.detail.textContent = `${error.message} Trying again in ${Math.round(error.delayMs / 1000)} s…`;
        await sleep(error.delayMs);
      }
    }

    // POST /uploads, PUT the bytes where it says (S3 itself, or the API's own upload
    // URL), POST complete_url. FALL_BACK when this service or this browser cannot.
    async sendDirect() {
      let created;
      try {
        created = await postJson("/uploads", {
          filename: this.file.name,
          size_bytes: this.file.size,
          content_type: this.file.type || "application/octet-stream",
        });
      } catch (error) {
        if (error.status === 404 || error.status === 405) {
          directUploads.available = false; // a service without direct uploads
          return FALL_BACK;
        }
        this.showError(error);
        return null;
      }
      this.adopt(created.task_id);
      const target = created.upload;
      let answer;
      try {
        // No API key: the URL carries its own credential, and S3 would refuse a second.
        answer = await this.transfer(target.method, target.url, target.headers || {}, this.file);
      } catch {
        // The upload URL is out of this browser's reach (an S3 host it cannot resolve,
        // no CORS): through the API instead, from now on. The abandoned task goes.
        directUploads.available = false;
        deleteTask(created.task_id);
        this.adopt(null);
        return FALL_BACK;
      }
      if (answer.status < 200 || answer.status >= 300) {
        this.showError(errorFrom(answer.status, answer.response));
        return null;
      }
      try {
        const accepted = await postJson(created.complete_url, null);
        directUploads.available = true;
        return accepted;
      } catch (error) {
        this.showError(error);
        return null;
      }
    }

    adopt(taskId) {
      this.taskId = taskId;
      if (taskId) this.node.dataset.taskId = taskId;
      else delete this.node.dataset.taskId;
    }

    async run() {
      let accepted = directUploads.available === false ? FALL_BACK : await this.sendDirect();
      if (accepted === FALL_BACK) accepted = await this.sendProxied();
      if (!accepted) return;
      this.adopt(accepted.task_id);
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
          const transient = error.status === 0 || error.status >= 500 || error.comeBack;
          failures += 1;
          if (!transient || failures > MAX_STREAM_FAILURES) {
            this.showError(error, "failed");
            return;
          }
          this.detail.textContent = `Lost contact with the service (${error.code}); retrying…`;
          await sleep(error.comeBack ? error.delayMs : RETRY_DELAY_MS);
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
        paintPlaceholder(link, img, task.placeholder);
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
      if (task.report) this.previews.after(reportNode(task.report));
      this.previews.after(linkForm(task.task_id));
    }
  }

  // A signed link to an on-demand rendition (POST /tasks/{id}/links): the service
  // signs it; a 409 says signing is off there.
  function linkForm(taskId) {
    const input = h("input", {
      type: "text",
      name: "options",
      value: "w:640,h:480,fit:cover,g:smart",
      "aria-label": "Rendition options",
      spellcheck: "false",
    });
    const result = h("p", { class: "link-result", "aria-live": "polite" });
    const form = h(
      "form",
      { class: "link-form" },
      h("label", { text: "On-demand link " }, input),
      " ",
      h("button", { type: "submit", text: "Make link" }),
      result,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      result.replaceChildren("Signing…");
      try {
        const made = await postJson(`/tasks/${taskId}/links`, { options: input.value.trim() });
        result.replaceChildren(
          h("a", { href: made.url, target: "_blank", rel: "noopener", class: "link-url", text: made.url }),
          h("span", { class: "muted", text: ` (${made.options})` }),
        );
      } catch (error) {
        result.replaceChildren(
          h("span", { class: "error", text: `${error.message} ` }),
          h("code", { class: "code", text: error.code }),
        );
      }
    });
    return form;
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
    // Until its bytes arrive, a direct upload knows only the size it announced.
    const facts = original.format
      ? `${original.format} ${original.width} × ${original.height}, ${formatBytes(original.size_bytes)}`
      : `${formatBytes(original.size_bytes)} announced`;
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
