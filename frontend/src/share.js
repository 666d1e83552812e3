// The share link: code, files, stdin, args, runtime and limits in the URL fragment,
// so the snippet never reaches a server log. Text fields are base64url of
// UTF-8; limits are plain numbers in API units: #code=cHJpbnQoMSk&timeout_ms=2000
// `code` is main.py; `files` (only when there are other tabs) is base64url of
// the JSON list [{"path", "content", "encoding"?}] as the API takes it, so a
// link from before files existed is simply a program of one file.
// `runtime` is a name as `GET /runtimes` lists it (`runtime=python-scientific`),
// left out for "the server's default", as in links from before runtimes.

import { ENTRY, base64ToBytes, checkPath } from './files.js';
import { LIMIT_KEYS } from './limits.js';
import { isRuntimeName } from './runtimes.js';

export { LIMIT_KEYS };

export function encodeShare({ code, files = [], stdin = '', args = '', runtime = '', limits = {} }) {
  const params = new URLSearchParams();
  params.set('code', toBase64Url(code));
  if (files.length) {
    const list = files.map(({ path, content, encoding }) => (encoding === 'base64' ? { path, content, encoding } : { path, content }));
    params.set('files', toBase64Url(JSON.stringify(list)));
  }
  if (stdin) params.set('stdin', toBase64Url(stdin));
  if (args) params.set('args', toBase64Url(args));
  if (runtime) params.set('runtime', runtime);
  for (const key of LIMIT_KEYS) {
    if (limits[key]) params.set(key, String(limits[key]));
  }
  return params.toString();
}

/** Returns the shared state, or null when the fragment holds none (or is damaged). */
export function decodeShare(fragment) {
  const params = new URLSearchParams(fragment.replace(/^#/, ''));
  if (!params.has('code')) return null;
  try {
    const limits = {};
    for (const key of LIMIT_KEYS) {
      const n = Number(params.get(key));
      if (Number.isSafeInteger(n) && n > 0) limits[key] = n;
    }
    const shared = {
      code: fromBase64Url(params.get('code')),
      stdin: fromBase64Url(params.get('stdin') ?? ''),
      args: fromBase64Url(params.get('args') ?? ''),
      limits,
    };
    if (params.has('files')) shared.files = decodeFiles(fromBase64Url(params.get('files')));
    if (params.has('runtime')) {
      if (!isRuntimeName(params.get('runtime'))) throw new Error('runtime: not a runtime name');
      shared.runtime = params.get('runtime');
    }
    return shared;
  } catch {
    return null;
  }
}

/** The files of a link, each checked as the server would; throws on anything amiss. */
function decodeFiles(json) {
  const list = JSON.parse(json);
  if (!Array.isArray(list)) throw new Error('files: not a list');
  const taken = [ENTRY];
  return list.map((file) => {
    if (!file || typeof file !== 'object' || typeof file.content !== 'string') throw new Error('files: not a file');
    const checked = checkPath(file.path, taken);
    if (checked.error) throw new Error(checked.error);
    taken.push(checked.path);
    if (file.encoding === 'base64') {
      base64ToBytes(file.content); // throws when damaged
      return { path: checked.path, content: file.content, encoding: 'base64' };
    }
    if (file.encoding != null && file.encoding !== 'utf8') throw new Error('files: unknown encoding');
    return { path: checked.path, content: file.content, encoding: 'utf8' };
  });
}

export function toBase64Url(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64Url(encoded) {
  const b64 = encoded.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}
