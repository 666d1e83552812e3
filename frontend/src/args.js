// Splits the args field the way a POSIX shell would (quotes and backslashes,
// no variables or globs), so `--name "Ada Lovelace"` is two arguments.

export function parseArgs(text) {
  const args = [];
  let current = '';
  let inArg = false;
  let quote = null; // "'" or '"' while inside quotes
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else current += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1])) current += text[++i];
      else current += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inArg = true;
    } else if (c === '\\' && i + 1 < text.length) {
      current += text[++i];
      inArg = true;
    } else if (/\s/.test(c)) {
      if (inArg) args.push(current);
      current = '';
      inArg = false;
    } else {
      current += c;
      inArg = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote === '"' ? 'double' : 'single'} quote in the arguments`);
  if (inArg) args.push(current);
  return args;
}
