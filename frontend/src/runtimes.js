// The runtime picker, without the DOM (unit-tested): what `GET /runtimes`
// lists as options, which one is selected, the limits of the selected one,
// and whether an example can run here.
//
// A program's runtime travels with it (drafts, history, share links) as a
// name; '' means "the server's default". A name the server does not list
// stays selected, marked unavailable, rather than being swapped silently
// for another runtime.

/** The packages a label names first, when the runtime bundles them. */
const HEADLINE = ['numpy', 'pandas', 'matplotlib', 'scipy', 'scikit-learn'];
/** How many packages a label names. */
const LABEL_PACKAGES = 3;

/** The well-formed runtimes of a `GET /runtimes` body, in the server's order. */
export function listedRuntimes(info) {
  const list = Array.isArray(info?.runtimes) ? info.runtimes : [];
  return list.filter((r) => r && typeof r.name === 'string' && r.name);
}

/** The runtime a request without `runtime` gets: the one marked `default`, else the first. */
export function defaultRuntime(info) {
  const list = listedRuntimes(info);
  return list.find((r) => r.default === true) ?? list[0] ?? null;
}

/** The package names of a runtime, sorted. */
function packageNames(runtime) {
  const packages = runtime.packages && typeof runtime.packages === 'object' ? runtime.packages : {};
  return Object.keys(packages).sort();
}

/**
 * What the picker says for a runtime: `Python 3.14.0`, or
 * `Python 3.15.0 + numpy, pandas, matplotlib` when it bundles packages (the
 * headline ones first, three at most: the option's tooltip lists them all).
 */
export function runtimeLabel(runtime) {
  const [lang] = runtime.name.split(/[-_]/);
  const version = typeof runtime.version === 'string' && runtime.version ? ` ${runtime.version}` : '';
  const base = `${lang.charAt(0).toUpperCase()}${lang.slice(1)}${version}`;
  const names = packageNames(runtime);
  if (!names.length) return base;
  const shown = [...HEADLINE.filter((n) => names.includes(n)), ...names.filter((n) => !HEADLINE.includes(n))].slice(0, LABEL_PACKAGES);
  return `${base} + ${shown.join(', ')}`;
}

/** The tooltip of a runtime's option: its name, and every package with its version. */
function runtimeTitle(runtime) {
  const names = packageNames(runtime);
  const packages = names.length ? `: ${names.map((n) => `${n} ${runtime.packages[n]}`).join(', ')}` : '';
  return `${runtime.name}${runtime.default === true ? ' (the server default)' : ''}${packages}`;
}

/**
 * The picker's options and its selection.
 *
 * @param {object|null} info  the last `GET /runtimes` body, or null while unknown
 * @param {string} wanted     the runtime the program asks for ('' = the default)
 * @returns {{ options: {value: string, label: string, title: string, unavailable: boolean}[],
 *   selected: string, known: boolean, unavailable: boolean }}
 *   `known`: the server's list is in; `unavailable`: the selection is not on it
 */
export function pickerState(info, wanted = '') {
  const list = listedRuntimes(info);
  const known = info != null;
  const labels = list.map(runtimeLabel);
  const options = list.map((runtime, i) => ({
    value: runtime.name,
    // Two runtimes that would read the same are told apart by name.
    label: labels.indexOf(labels[i]) !== labels.lastIndexOf(labels[i]) ? `${labels[i]} (${runtime.name})` : labels[i],
    title: runtimeTitle(runtime),
    unavailable: false,
  }));
  if (wanted && list.some((r) => r.name === wanted)) return { options, selected: wanted, known, unavailable: false };
  if (!wanted) {
    if (list.length) return { options, selected: defaultRuntime(info).name, known, unavailable: false };
    // Nothing listed (yet): one option standing for whatever the server defaults to.
    const label = known ? 'no runtime listed' : 'server default';
    return { options: [{ value: '', label, title: 'whatever the server runs by default', unavailable: known }], selected: '', known, unavailable: known };
  }
  if (!known) {
    return { options: [{ value: wanted, label: wanted, title: `${wanted} (not confirmed: the server's list is not in)`, unavailable: false }], selected: wanted, known, unavailable: false };
  }
  options.push({
    value: wanted,
    label: `${wanted} (not on this server)`,
    title: `This program asks for the ${wanted} runtime, which this server does not list`,
    unavailable: true,
  });
  return { options, selected: wanted, known, unavailable: true };
}

/**
 * The limits (`{ default, max }`, API units) of the runtime `name` ('' = the
 * default), or null when the server does not list it. A server that gives
 * only the top-level `limits` has them for its default runtime.
 */
export function runtimeLimits(info, name = '') {
  if (!info) return null;
  const runtime = name ? listedRuntimes(info).find((r) => r.name === name) : defaultRuntime(info);
  if (!runtime) return name ? null : info.limits ?? null;
  if (runtime.limits && typeof runtime.limits === 'object') return runtime.limits;
  return runtime === defaultRuntime(info) ? info.limits ?? null : null;
}

/** Whether an example's runtime is on the server (true while the list is unknown). */
export function exampleOffered(example, info) {
  if (!example.runtime || info == null) return true;
  return listedRuntimes(info).some((r) => r.name === example.runtime);
}

/** A runtime name as a link or draft may carry it; anything else is not one. */
export function isRuntimeName(name) {
  return typeof name === 'string' && /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(name);
}
