// SKR's page script: calls the JSON API of the same origin. Everything that came from a
// scraped page is put into the document as text (textContent, createElement), never as
// markup, and links are made only from http(s) URLs.
"use strict";

(function () {
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  const MAX_STREAMS = 4; // a browser opens about 6 connections per host; keep some free

  // ---- small helpers -------------------------------------------------------------------

  function safeHttpUrl(value) {
    if (typeof value !== "string" || /[\u0000-\u0020\u007f\\]/.test(value.trim())) {
      return null;
    }
    try {
      const url = new URL(value.trim());
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function link(url, text, className) {
    const href = safeHttpUrl(url);
    const node = el(href ? "a" : "span", className ? { className } : {}, text);
    if (href) {
      node.href = href;
      node.rel = "noreferrer";
    }
    return node;
  }

  function announce(message) {
    const region = document.getElementById("announcer");
    if (region) region.textContent = message;
  }

  function showError(id, message) {
    const box = document.getElementById(id);
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function problemText(response) {
    try {
      const body = await response.json();
      return body.detail || body.title || response.statusText;
    } catch (_) {
      return `${response.status} ${response.statusText}`;
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (!response.ok) throw new Error(await problemText(response));
    return response.status === 204 ? null : response.json();
  }

  // ---- ask: the answer streams in, each [n] links to its citation ---------------------

  function answerParagraph(answer, numbers) {
    const paragraph = el("p");
    let last = 0;
    for (const match of answer.matchAll(/\[(\d{1,3})\]/g)) {
      const n = Number(match[1]);
      if (!numbers.has(n)) continue;
      paragraph.append(answer.slice(last, match.index));
      paragraph.append(el("a", {
        className: "cite-ref", href: `#citation-${n}`, "aria-label": `citation ${n}`,
        text: match[0],
      }));
      last = match.index + match[0].length;
    }
    paragraph.append(answer.slice(last));
    return paragraph;
  }

  function citationItem(group) {
    const c = group[0];
    const source = el("p", { className: "citation-source" }, link(c.url, c.title || c.url));
    if (c.section) source.append(" ", el("span", { className: "citation-section", text: `· ${c.section}` }));
    return el("li", { className: "citation", id: `citation-${c.n}`, tabindex: "-1", value: String(c.n) },
      source,
      ...group.map((quoted) => el("blockquote", { className: "citation-quote", text: quoted.quote })),
      el("p", { className: "citation-url", text: c.url }));
  }

  function groupByNumber(citations) {
    const groups = new Map(); // a passage may be quoted more than once: one item per number
    for (const c of citations) groups.set(c.n, [...(groups.get(c.n) || []), c]);
    return [...groups.keys()].sort((a, b) => a - b).map((n) => groups.get(n));
  }

  function showAnswer(result) {
    const numbers = new Set(result.citations.map((c) => c.n));
    const text = document.getElementById("answer-text");
    text.replaceChildren(answerParagraph(result.answer, numbers));
    text.setAttribute("aria-busy", "false");
    document.getElementById("answer-mode").textContent = result.mode === "llm"
      ? "Written by the language model from the sources below."
      : "Sentences quoted from the sources below.";
    document.getElementById("answer-degraded").hidden = !result.degraded;
    document.getElementById("citations").replaceChildren(...groupByNumber(result.citations).map(citationItem));
    document.getElementById("citations-heading").hidden = result.citations.length === 0;
  }

  function parseEvent(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    return { name, data: data.join("\n") };
  }

  async function ask(form) {
    const question = form.elements.question.value.trim();
    if (!question) return;
    const section = document.getElementById("answer");
    const text = document.getElementById("answer-text");
    const button = form.querySelector("button[type=submit]");
    showError("ask-error", "");
    section.hidden = false;
    text.replaceChildren(el("p"));
    text.setAttribute("aria-busy", "true");
    document.getElementById("answer-mode").textContent = "Answering…";
    document.getElementById("answer-degraded").hidden = true;
    document.getElementById("citations").replaceChildren();
    document.getElementById("citations-heading").hidden = true;
    button.disabled = true;
    try {
      const response = await fetch("/v1/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ question, collection: form.elements.collection.value }),
      });
      if (!response.ok) throw new Error(await problemText(response));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.name === "token") text.firstChild.append(JSON.parse(event.data));
          else if (event.name === "answer") showAnswer(JSON.parse(event.data));
        }
      }
    } catch (error) {
      section.hidden = true;
      showError("ask-error", `The question could not be answered: ${error.message}`);
    } finally {
      text.setAttribute("aria-busy", "false");
      button.disabled = false;
    }
  }

  function followCitation(anchor) {
    const target = document.getElementById(anchor.getAttribute("href").slice(1));
    if (!target) return;
    document.querySelectorAll(".citation.is-target").forEach((c) => c.classList.remove("is-target"));
    target.classList.add("is-target");
    target.focus();
  }

  // ---- library: delete a document, add a collection ------------------------------------

  async function deleteDocument(button) {
    const row = button.closest("[data-document-id]");
    const title = row.querySelector("th").textContent.trim();
    if (!window.confirm(`Delete “${title}” with its passages and images?`)) return;
    button.disabled = true;
    try {
      await api("DELETE", `/v1/documents/${encodeURIComponent(row.dataset.documentId)}`);
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      announce(`Deleted “${title}”.`);
      (next ? next.querySelector("button") : document.getElementById("main")).focus();
    } catch (error) {
      button.disabled = false;
      announce(`Could not delete “${title}”: ${error.message}`);
    }
  }

  async function createCollection(form) {
    showError("collection-error", "");
    try {
      const created = await api("POST", "/v1/collections", { name: form.elements.name.value.trim() });
      window.location.assign(`/documents?collection=${encodeURIComponent(created.name)}`);
    } catch (error) {
      showError("collection-error", `The collection was not created: ${error.message}`);
    }
  }

  // ---- sources: add a page or a crawl, follow jobs live, pause / resume / cancel -------

  const streams = new Map(); // job id -> EventSource
  const waiting = []; // job ids waiting for a stream slot

  function formatRate(rate) {
    return rate === null || rate === undefined ? "–" : `${rate.toFixed(2)} pages/s`;
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const total = Math.round(seconds);
    if (total < 60) return `${total} s`;
    const minutes = Math.floor(total / 60);
    if (minutes < 60) return `${minutes} min ${total % 60} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function field(card, name) {
    return card.querySelector(`[data-field="${name}"]`);
  }

  function updateJob(card, job) {
    const c = job.counters;
    const done = c.fetched + c.failed + c.skipped;
    card.dataset.status = job.status;
    const status = field(card, "status");
    status.textContent = job.status;
    status.className = `status status-${job.status}`;
    field(card, "summary").textContent = `${job.status} · ${done} of ${c.discovered} URLs done`;
    const progress = field(card, "progress");
    if (c.discovered > 0 && job.status !== "queued") {
      progress.max = c.discovered;
      progress.value = Math.min(done, c.discovered);
    } else if (FINAL.has(job.status)) {
      progress.max = 1;
      progress.value = job.status === "succeeded" ? 1 : 0;
    } else {
      progress.removeAttribute("value");
    }
    for (const dd of card.querySelectorAll("[data-counter]")) {
      dd.textContent = String(c[dd.dataset.counter] ?? 0);
    }
    field(card, "rate").textContent = formatRate(job.pages_per_second);
    field(card, "eta").textContent = FINAL.has(job.status) ? "–" : formatDuration(job.eta_seconds);
    const reason = field(card, "reason");
    reason.textContent = job.reason || "";
    reason.hidden = !job.reason;
    field(card, "errors-box").hidden = job.errors.length === 0;
    field(card, "error-count").textContent = String(job.errors.length);
    field(card, "errors").replaceChildren(...job.errors.map((e) =>
      el("li", {}, link(e.url, e.url, "url"), " ", el("span", { className: "reason", text: e.reason }))));
    const can = {
      pause: job.status === "queued" || job.status === "running",
      resume: job.status === "paused",
      cancel: !FINAL.has(job.status),
    };
    for (const button of card.querySelectorAll("[data-action]")) {
      button.hidden = !can[button.dataset.action];
      button.disabled = false;
    }
  }

  function newJobCard(job, collectionName) {
    const card = document.getElementById("job-template").content.firstElementChild.cloneNode(true);
    const titleId = `job-title-${job.id}`;
    card.dataset.jobId = job.id;
    card.setAttribute("aria-labelledby", titleId);
    card.querySelector(".job-title").id = titleId;
    for (const node of card.querySelectorAll("[aria-describedby], progress")) {
      node.setAttribute(node.tagName === "PROGRESS" ? "aria-labelledby" : "aria-describedby", titleId);
    }
    field(card, "kind").textContent = job.kind === "crawl" ? "Crawl" : "Page";
    const url = card.querySelector(".job-url");
    url.replaceWith(link(job.url, job.url, "job-url"));
    field(card, "collection").textContent = collectionName;
    field(card, "created").textContent = "just now";
    updateJob(card, job);
    return card;
  }

  function watchJob(id) {
    if (streams.has(id) || waiting.includes(id)) return;
    if (streams.size >= MAX_STREAMS) {
      waiting.push(id);
      return;
    }
    const card = document.querySelector(`.job[data-job-id="${CSS.escape(id)}"]`);
    const source = new EventSource(`/v1/jobs/${encodeURIComponent(id)}/events`);
    streams.set(id, source);
    const finish = () => {
      source.close();
      streams.delete(id);
      if (waiting.length) watchJob(waiting.shift());
    };
    source.addEventListener("job", (event) => {
      const job = JSON.parse(event.data);
      updateJob(card, job);
      if (FINAL.has(job.status)) {
        finish();
        announce(`${job.kind === "crawl" ? "Crawl" : "Page"} ${job.url} ${job.status}.`);
      }
    });
    // The browser reconnects by itself after a dropped stream; a refused one is closed.
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) finish();
    });
  }

  async function controlJob(button) {
    const card = button.closest(".job");
    button.disabled = true;
    try {
      const job = await api("POST", `/v1/jobs/${encodeURIComponent(card.dataset.jobId)}/${button.dataset.action}`);
      updateJob(card, job);
      if (!FINAL.has(job.status)) watchJob(job.id);
      announce(`Job ${job.status}.`);
    } catch (error) {
      button.disabled = false;
      announce(`Could not ${button.dataset.action} the job: ${error.message}`);
    }
  }

  async function addSource(form) {
    showError("ingest-error", "");
    const f = form.elements;
    const body = { url: f.url.value.trim(), collection: f.collection.value };
    if (f.crawl.checked) {
      body.crawl = {
        max_depth: Number(f.max_depth.value),
        max_pages: Number(f.max_pages.value),
        sitemap: f.sitemap.checked,
      };
      if (f.prefix.value.trim()) body.crawl.prefix = f.prefix.value.trim();
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const accepted = await api("POST", "/v1/ingest", body);
      const job = await api("GET", `/v1/jobs/${encodeURIComponent(accepted.job_id)}`);
      document.getElementById("jobs").prepend(newJobCard(job, body.collection));
      document.getElementById("jobs-empty").hidden = true;
      watchJob(job.id);
      announce(`Added ${job.url}.`);
      f.url.value = "";
    } catch (error) {
      showError("ingest-error", `The source was not added: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // ---- wiring ------------------------------------------------------------------------

  document.addEventListener("submit", (event) => {
    const form = event.target;
    const handlers = { "ask-form": ask, "ingest-form": addSource, "collection-form": createCollection };
    if (handlers[form.id]) {
      event.preventDefault();
      handlers[form.id](form);
    }
  });

  document.addEventListener("click", (event) => {
    const target = event.target.closest("a.cite-ref, button[data-action]");
    if (!target) return;
    if (target.matches("a.cite-ref")) followCitation(target);
    else if (target.dataset.action === "delete-document") deleteDocument(target);
    else controlJob(target);
  });

  document.addEventListener("change", (event) => {
    if (event.target.id === "ingest-crawl") {
      document.getElementById("crawl-options").disabled = !event.target.checked;
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    const crawl = document.getElementById("ingest-crawl");
    if (crawl) document.getElementById("crawl-options").disabled = !crawl.checked;
    for (const card of document.querySelectorAll(".job[data-job-id]")) {
      if (!FINAL.has(card.dataset.status)) watchJob(card.dataset.jobId);
    }
  });
})();
