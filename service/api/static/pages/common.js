// Shared helpers of the pages: the app's root path, API calls with the key, JSON fetches,
// number formatting.
export const ROOT = document.body.dataset.root || "";

// The API key (or access token) is asked for once, when the API first answers 401, kept in
// sessionStorage (this tab only, gone when it closes) and sent as a header, never in a URL.
const KEY_ITEM = "lungseg.apiKey";
let asking = null; // one dialog for the concurrent calls that were refused

function withKey(init, key) {
  const headers = new Headers(init.headers || {});
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return { ...init, headers };
}

function askKey(message) {
  asking ??= new Promise((resolve) => {
    const input = node("input", { type: "password", id: "api-key", autocomplete: "off",
      spellcheck: "false", required: "" });
    const dialog = node("dialog", { class: "key-dialog", "aria-labelledby": "api-key-title" },
      node("form", { method: "dialog" },
        node("h2", { id: "api-key-title", text: "API key" }),
        node("p", { id: "api-key-message", text: message }),
        node("label", { for: "api-key", text: "Key or access token" }), input,
        node("p", { class: "muted",
          text: "Kept in this tab only (sessionStorage) and sent as a header." }),
        node("menu", {}, node("button", { value: "cancel", formnovalidate: "", text: "Cancel" }),
          node("button", { value: "ok", text: "Use this key" }))));
    dialog.addEventListener("close", () => {
      const key = dialog.returnValue === "ok" ? input.value.trim() : "";
      dialog.remove();
      if (key) sessionStorage.setItem(KEY_ITEM, key);
      resolve(Boolean(key));
    });
    document.body.append(dialog);
    dialog.showModal();
  }).finally(() => { asking = null; });
  return asking;
}

// fetch() of the API with the stored key. Refused (401, or 403 for the key given), it asks for
// a key and tries again: one dialog for the calls refused at the same time.
export async function apiFetch(path, init = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const sent = sessionStorage.getItem(KEY_ITEM);
    const response = await fetch(`${ROOT}${path}`, withKey(init, sent));
    const refused = response.status === 401 || (response.status === 403 && sent);
    if (!refused || attempt === 3) return response;
    const stored = sessionStorage.getItem(KEY_ITEM);
    if (stored && stored !== sent) continue; // a key was entered meanwhile: use it
    const problem = await response.clone().json().catch(() => ({}));
    const message = !sent ? "This service needs an API key." :
      `That key was refused: ${problem.detail || `HTTP ${response.status}`}`;
    if (!(await askKey(message))) return response;
  }
}

export async function getJson(path) {
  const response = await apiFetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${path}: HTTP ${response.status}`);
  return body;
}

export function fmt(value, digits = 3) {
  return value === null || value === undefined || Number.isNaN(value)
    ? "—"
    : Number(value).toFixed(digits);
}

export function node(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") element.textContent = value;
    else element.setAttribute(key, value);
  }
  for (const child of children) element.append(child);
  return element;
}

export const PALETTE = ["#1d6fb8", "#c2410c", "#2e7d32", "#7b3fa0", "#8c6d1f", "#0f7c86"];
