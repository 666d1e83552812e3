// The share link: code, stdin, args and limits in the URL fragment, so the
// snippet never reaches a server log. Text fields are base64url of UTF-8;
// limits are plain numbers: #code=cHJpbnQoMSk&timeout_ms=2000

export const LIMIT_KEYS = ['timeout_ms', 'fuel', 'memory_bytes', 'output_bytes'];

export function encodeShare({ code, stdin = '', args = '', limits = {} }) {
  const params = new URLSearchParams();
  params.set('code', toBase64Url(code));
  if (stdin) params.set('stdin', toBase64Url(stdin));
  if (args) params.set('args', toBase64Url(args));
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
    return {
      code: fromBase64Url(params.get('code')),
      stdin: fromBase64Url(params.get('stdin') ?? ''),
      args: fromBase64Url(params.get('args') ?? ''),
      limits,
    };
  } catch {
    return null;
  }
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
