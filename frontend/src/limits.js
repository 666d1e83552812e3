// The limits form, without the DOM (unit-tested): which limits the page
// offers, the unit each is shown in, the form's values to the request's
// `limits` (API units) and back, and the "custom: …" summary.
//
// The server takes more limits than these (`files_count`, `file_bytes`,
// `open_files`, `path_bytes`, `path_depth`); the page leaves them at the
// server's defaults. Every limit is a positive integer on the wire and the
// server clamps it to its maximum (`GET /runtimes` → `limits.max`).

/**
 * The fields in the order the form shows them; `scale` is how many API
 * units one unit of the field is (the form shows MiB and KiB, the API wants
 * bytes), `short` names the field in the summary.
 */
export const LIMIT_FIELDS = [
  { key: 'timeout_ms', label: 'Time (ms)', short: 'time', scale: 1 },
  { key: 'fuel', label: 'Fuel (units)', short: 'fuel', scale: 1 },
  { key: 'memory_bytes', label: 'Memory (MiB)', short: 'memory', scale: 1 << 20 },
  { key: 'output_bytes', label: 'Output (KiB)', short: 'output', scale: 1 << 10 },
  { key: 'files_bytes', label: 'Files (MiB)', short: 'files', scale: 1 << 20 },
  { key: 'output_files_bytes', label: 'Returned files (KiB)', short: 'returned files', scale: 1 << 10 },
];

/** The limits the page sets, carried in drafts, history and share links (API units). */
export const LIMIT_KEYS = LIMIT_FIELDS.map((f) => f.key);

const FIELD = Object.fromEntries(LIMIT_FIELDS.map((f) => [f.key, f]));

/**
 * The form's values (text, in the fields' units; empty means the server
 * default) as limits in API units. Not validated: see `checkLimits`.
 *
 * @param {Record<string, string>} values  by key
 * @returns {Record<string, number>}
 */
export function limitsFromForm(values) {
  const limits = {};
  for (const { key, scale } of LIMIT_FIELDS) {
    const raw = String(values[key] ?? '').trim();
    if (raw) limits[key] = Number(raw) * scale;
  }
  return limits;
}

/** A limit in API units as the form shows it ('' when unset). */
export function formValue(key, value) {
  return value ? String(value / FIELD[key].scale) : '';
}

/** The server's maximum as the form's `max` (rounded down to a whole unit), or '' when unknown. */
export function formMax(key, value) {
  return value ? String(Math.floor(value / FIELD[key].scale)) : '';
}

/** The limits when each is a positive whole number of API units; else throws naming the field. */
export function checkLimits(limits) {
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`The ${FIELD[key]?.label ?? key} limit must be a positive whole number.`);
    }
  }
  return limits;
}

/** What the Limits heading says: `server defaults`, or `custom: time, returned files`. */
export function limitsSummary(keys) {
  const set = LIMIT_FIELDS.filter((f) => keys.includes(f.key));
  return set.length ? `custom: ${set.map((f) => f.short).join(', ')}` : 'server defaults';
}
