// Shared helpers of the pages: the app's root path, JSON fetches, number formatting.
export const ROOT = document.body.dataset.root || "";

export async function getJson(path) {
  const response = await fetch(`${ROOT}${path}`, { headers: { Accept: "application/json" } });
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
