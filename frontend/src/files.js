// Files in and out of a run, without the DOM (unit-tested): the path rule
// the server applies (api/src/files.rs `normalise_path`), the request built
// from the tabs, base64 both ways, what an upload becomes, and the bytes and
// MIME type of a file the run wrote.
//
// The program is `main.py` (the first tab, sent as `code`) plus the other
// tabs, sent as `files` beside it; the server runs `main.py` from /sandbox.

import { parseArgs } from './args.js';

/** The entry: the first tab, always there, sent as `code`. */
export const ENTRY = 'main.py';
/** Longest name of one path component, in bytes (the server's MAX_NAME_BYTES). */
export const MAX_NAME_BYTES = 255;
/** Largest file the page takes from an upload (the default request limit is 4 MiB). */
export const MAX_UPLOAD_BYTES = 4 << 20;

const utf8 = new TextEncoder();

/**
 * A path as the server would take it: `{ path }` in its normal form
 * (`./a//b/` → `a/b`), or `{ error }` with a sentence saying why not.
 * `taken` are the paths already in use (normal form); a path equal to one,
 * or a file that would have to be a folder of another (or the reverse), is
 * refused as the server refuses it.
 *
 * @param {string} raw
 * @param {string[]} [taken]
 * @returns {{ path: string } | { error: string }}
 */
export function checkPath(raw, taken = []) {
  if (typeof raw !== 'string') return { error: 'A file name must be text.' };
  if (raw.startsWith('/')) return { error: 'The name must be relative to the working directory: no leading “/”.' };
  if (raw.includes('\0')) return { error: 'The name must not contain a NUL character.' };
  if (raw.includes('\\')) return { error: 'The name must not contain “\\”; use “/” between folders.' };
  const parts = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return { error: 'The name must not contain “..”: files stay inside the working directory.' };
    if (utf8.encode(part).length > MAX_NAME_BYTES) return { error: `Each part of the name must be at most ${MAX_NAME_BYTES} bytes.` };
    parts.push(part);
  }
  if (!parts.length) return { error: 'Give the file a name, e.g. helper.py.' };
  const path = parts.join('/');
  for (const other of taken) {
    if (other === path) return { error: `There is already a file named ${path}.` };
    if (other.startsWith(`${path}/`)) return { error: `${path} is a folder of ${other}, so it cannot also be a file.` };
    if (path.startsWith(`${other}/`)) return { error: `${other} is a file, so it cannot also be a folder of ${path}.` };
  }
  return { path };
}

/**
 * The `POST /execute` body for a program: `code` is main.py, `files` the
 * other tabs (left out when there are none, so a one-file program is the
 * request it always was); `runtime` only when the program names one ('' is
 * the server's default). Throws with a sentence when a path is refused.
 *
 * @param {{ code: string, files?: {path: string, content: string, encoding?: string}[], stdin?: string, args?: string, runtime?: string }} state
 * @param {object} limits validated limits in API units
 */
export function buildRequest({ code, files = [], stdin = '', args = '', runtime = '' }, limits = {}) {
  const taken = [ENTRY];
  const wire = files.map((file) => {
    const checked = checkPath(file.path, taken);
    if (checked.error) throw new Error(`File “${file.path}”: ${checked.error}`);
    taken.push(checked.path);
    return file.encoding === 'base64'
      ? { path: checked.path, content: file.content, encoding: 'base64' }
      : { path: checked.path, content: file.content };
  });
  const request = { code, stdin, args: parseArgs(args), limits };
  if (wire.length) request.files = wire;
  if (runtime) request.runtime = runtime;
  return request;
}

/** Standard base64 (with padding) of bytes. */
export function bytesToBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** The bytes of standard base64, padded as the server writes and reads it; throws on anything else. */
export function base64ToBytes(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new Error('not base64');
  }
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * What an uploaded file becomes: text the editor can hold (`utf8`), or
 * `base64` for anything else — bytes that are not UTF-8, or hold a NUL, or
 * line breaks the editor would not keep as they are (a lone CR, or CRLF
 * mixed with LF). Either way the run gets exactly the bytes uploaded.
 *
 * @param {Uint8Array} bytes
 * @returns {{ encoding: 'utf8' | 'base64', content: string, size: number }}
 */
export function decodeUpload(bytes) {
  let text = null;
  try {
    // ignoreBOM keeps a byte-order mark in the text, so the bytes survive.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    // not UTF-8
  }
  const editable = text != null && !text.includes('\0') && lineBreaksKept(text);
  return editable
    ? { encoding: 'utf8', content: text, size: bytes.length }
    : { encoding: 'base64', content: bytesToBase64(bytes), size: bytes.length };
}

/** True when the editor keeps the text's line breaks: all LF, or all CRLF. */
function lineBreaksKept(text) {
  const cr = text.split('\r').length - 1;
  if (cr === 0) return true;
  const crlf = text.split('\r\n').length - 1;
  return cr === crlf && text.split('\n').length - 1 === crlf;
}

/** The bytes of a file in a response, or null when it was not returned (or is damaged). */
export function fileBytes(file) {
  if (typeof file?.content !== 'string') return null;
  if (file.encoding === 'base64') {
    try {
      return base64ToBytes(file.content);
    } catch {
      return null;
    }
  }
  return utf8.encode(file.content);
}

const IMAGE_MIME = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', svg: 'image/svg+xml' };

/** The MIME type of an image the page shows inline (by extension), else null. */
export function imageMime(path) {
  const ext = /\.([^./]+)$/.exec(path)?.[1]?.toLowerCase();
  return IMAGE_MIME[ext] ?? null;
}

/** `data:` URL of bytes; inline images use these (an opaque origin, even opened in a tab of their own). */
export function dataUrl(mime, bytes) {
  return `data:${mime};base64,${bytesToBase64(bytes)}`;
}

/** The last part of a path: the name a download is saved under. */
export function baseName(path) {
  return path.slice(path.lastIndexOf('/') + 1);
}

const oneDecimal = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });
const twoDecimals = new Intl.NumberFormat('en', { maximumFractionDigits: 2 });
const whole = new Intl.NumberFormat('en');

/** 1 byte, 812 bytes, 1.5 KiB, 1.05 MiB. */
export function formatSize(n) {
  if (n < 1024) return `${whole.format(n)} ${n === 1 ? 'byte' : 'bytes'}`;
  if (n < 1 << 20) return `${oneDecimal.format(n / 1024)} KiB`;
  return `${twoDecimals.format(n / (1 << 20))} MiB`;
}
