// The files a run wrote, under its output: one line each with the path, the
// size and a download link (a Blob of the file's bytes, base64 decoded), or
// "not returned (over the output cap)" when the response listed it without
// content; `.png`, `.jpg`/`.jpeg` and `.svg` files are also shown as images.
//
// Nothing here goes through innerHTML. Images are <img> elements with a
// data: URL of their bytes and their MIME type: an SVG in an <img> runs no
// script, and a data: URL has an opaque origin even when opened in a tab of
// its own (a blob: URL would carry this page's). Downloads are Blobs typed
// application/octet-stream for the same reason: opened rather than saved,
// they are never rendered in this origin.

import { baseName, dataUrl, fileBytes, formatSize, imageMime } from './files.js';

/** Blob URLs of the last render, revoked by the next. */
let blobUrls = [];

/**
 * @param {{ box: HTMLElement, list: HTMLElement, images: HTMLElement, cut: HTMLElement, count: HTMLElement }} el
 * @param {unknown} files  the response's `files`
 * @param {boolean} truncated  the response's `truncated.files`
 */
export function renderOutputFiles(el, files, truncated = false) {
  for (const url of blobUrls) URL.revokeObjectURL(url);
  blobUrls = [];
  const list = Array.isArray(files) ? files.filter((f) => f && typeof f.path === 'string') : [];
  const figures = [];
  el.list.replaceChildren(...list.map((file) => {
    const li = document.createElement('li');
    li.dataset.path = file.path;
    const size = span('size', Number.isSafeInteger(file.size) ? formatSize(file.size) : '');
    if (Number.isSafeInteger(file.size)) size.title = `${file.size} bytes`;
    li.append(span('path', file.path), size);
    const bytes = fileBytes(file);
    if (!bytes) {
      li.classList.add('omitted');
      li.append(span('missing', file.content == null ? 'not returned (over the output cap)' : 'not returned (damaged in transit)'));
      return li;
    }
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    blobUrls.push(url);
    const link = document.createElement('a');
    link.href = url;
    link.download = baseName(file.path);
    link.textContent = 'download';
    link.setAttribute('aria-label', `Download ${file.path}`);
    li.append(link);
    const mime = imageMime(file.path);
    if (mime) figures.push(figure(file.path, mime, bytes));
    return li;
  }));
  el.images.replaceChildren(...figures);
  el.images.hidden = figures.length === 0;
  el.count.textContent = list.length ? String(list.length) : '';
  el.cut.hidden = !truncated;
  el.box.hidden = list.length === 0 && !truncated;
}

function span(className, text) {
  const s = document.createElement('span');
  s.className = className;
  s.textContent = text;
  return s;
}

/** An image with its path under it; a tiny one is scaled up with sharp pixels. */
function figure(path, mime, bytes) {
  const fig = document.createElement('figure');
  const img = document.createElement('img');
  const caption = document.createElement('figcaption');
  img.alt = path;
  img.dataset.path = path;
  caption.textContent = path;
  img.addEventListener('load', () => {
    const { naturalWidth: w, naturalHeight: h } = img;
    caption.textContent = w && h ? `${path} · ${w} × ${h}` : path;
    const scale = Math.floor(96 / Math.max(w, h, 1));
    if (mime !== 'image/svg+xml' && scale >= 2) {
      img.classList.add('pixelated');
      img.style.width = `${w * scale}px`;
    }
  });
  img.addEventListener('error', () => {
    fig.classList.add('broken');
    caption.textContent = `${path} · could not be shown as ${mime}`;
  });
  img.src = dataUrl(mime, bytes);
  fig.append(img, caption);
  return fig;
}
