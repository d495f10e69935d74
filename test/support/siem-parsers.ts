/**
 * Receiver-side parsers for the SIEM formats, written from the specifications (RFC 5424 §6, RFC 3164
 * §4.1, ArcSight CEF, IBM LEEF 2.0) independently of src/siem, so tests check what a receiver would
 * read, not what our own code believes it wrote. They throw on anything malformed.
 */

export interface Rfc5424Message {
  pri: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  sd: Record<string, Record<string, string>>;
  msg: string;
}

export function parseRfc5424(text: string): Rfc5424Message {
  const head = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) /.exec(text);
  if (!head) throw new Error(`not an RFC 5424 header: ${text.slice(0, 80)}`);
  let i = head[0].length;
  const sd: Record<string, Record<string, string>> = {};
  if (text[i] === '-') {
    i += 1;
  } else {
    while (text[i] === '[') {
      i += 1;
      const idEnd = text.slice(i).search(/[ \]]/);
      if (idEnd < 0) throw new Error('unterminated SD-ID');
      const id = text.slice(i, i + idEnd);
      if (!/^[!-~]{1,32}$/.test(id) || /[= \]"]/.test(id)) throw new Error(`bad SD-ID ${id}`);
      i += idEnd;
      const params: Record<string, string> = {};
      while (text[i] === ' ') {
        i += 1;
        const eq = text.indexOf('=', i);
        const name = text.slice(i, eq);
        if (!/^[^= \]"]{1,32}$/.test(name)) throw new Error(`bad PARAM-NAME ${name}`);
        if (text[eq + 1] !== '"') throw new Error(`PARAM-VALUE of ${name} not quoted`);
        let j = eq + 2;
        let value = '';
        for (;;) {
          const c = text[j];
          if (c === undefined) throw new Error(`unterminated PARAM-VALUE of ${name}`);
          if (c === '\\' && (text[j + 1] === '"' || text[j + 1] === '\\' || text[j + 1] === ']')) {
            value += text[j + 1];
            j += 2;
            continue;
          }
          if (c === '"') break;
          if (c === ']') throw new Error(`unescaped ] in PARAM-VALUE of ${name}`);
          value += c;
          j += 1;
        }
        params[name] = value;
        i = j + 1;
      }
      if (text[i] !== ']') throw new Error(`SD-ELEMENT ${id} not closed at ${i}`);
      i += 1;
      sd[id] = params;
    }
  }
  let msg = '';
  if (i < text.length) {
    if (text[i] !== ' ') throw new Error('no space before MSG');
    msg = text.slice(i + 1);
  }
  return {
    pri: Number(head[1]),
    timestamp: head[2]!,
    hostname: head[3]!,
    appName: head[4]!,
    procId: head[5]!,
    msgId: head[6]!,
    sd,
    msg,
  };
}

export function parseRfc3164(text: string): {
  pri: number;
  timestamp: string;
  hostname: string;
  tag: string;
  msg: string;
} {
  const m = /^<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([A-Za-z0-9_.-]{1,32}): (.*)$/s.exec(
    text,
  );
  if (!m) throw new Error(`not an RFC 3164 message: ${text.slice(0, 80)}`);
  return { pri: Number(m[1]), timestamp: m[2]!, hostname: m[3]!, tag: m[4]!, msg: m[5]! };
}

export interface CefEvent {
  version: string;
  vendor: string;
  product: string;
  deviceVersion: string;
  signatureId: string;
  name: string;
  severity: string;
  extension: Record<string, string>;
}

/** Splits the CEF header on unescaped pipes and unescapes `\|` and `\\`. */
export function parseCef(text: string): CefEvent {
  if (!text.startsWith('CEF:')) throw new Error(`not CEF: ${text.slice(0, 40)}`);
  const fields: string[] = [];
  let current = '';
  let i = 4;
  while (fields.length < 7) {
    const c = text[i];
    if (c === undefined) throw new Error('CEF header has fewer than 8 fields');
    if (c === '\\') {
      const next = text[i + 1];
      if (next !== '|' && next !== '\\') throw new Error(`bad escape \\${next} in CEF header`);
      current += next;
      i += 2;
      continue;
    }
    if (c === '\n' || c === '\r') throw new Error('line break in CEF header');
    if (c === '|') {
      fields.push(current);
      current = '';
    } else {
      current += c;
    }
    i += 1;
  }
  const extension: Record<string, string> = {};
  const ext = text.slice(i);
  if (/[\r\n]/.test(ext)) throw new Error('raw line break in CEF extension');
  // A key is a run of [A-Za-z0-9_] before an unescaped `=`; its value runs to the space before the next key.
  const keys: Array<{ key: string; start: number; valueStart: number }> = [];
  const keyPattern = /(?:^| )([A-Za-z0-9_]+)=/g;
  for (const m of ext.matchAll(keyPattern)) {
    // Skip `=` that are escaped (preceded by an odd number of backslashes).
    const eqAt = (m.index ?? 0) + m[0].length - 1;
    let slashes = 0;
    for (let j = eqAt - 1; j >= 0 && ext[j] === '\\'; j--) slashes++;
    if (slashes % 2 === 1) continue;
    keys.push({ key: m[1]!, start: m.index ?? 0, valueStart: eqAt + 1 });
  }
  keys.forEach((k, n) => {
    const end = n + 1 < keys.length ? keys[n + 1]!.start : ext.length;
    const raw = ext.slice(k.valueStart, end);
    let value = '';
    for (let j = 0; j < raw.length; j++) {
      const c = raw[j]!;
      if (c === '=') throw new Error(`unescaped = in CEF value of ${k.key}: ${raw}`);
      if (c !== '\\') {
        value += c;
        continue;
      }
      const next = raw[j + 1];
      if (next === '\\' || next === '=') value += next;
      else if (next === 'n') value += '\n';
      else if (next === 'r') value += '\r';
      else throw new Error(`bad escape \\${next} in CEF value of ${k.key}`);
      j += 1;
    }
    extension[k.key] = value;
  });
  const [version, vendor, product, deviceVersion, signatureId, name, severity] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  return { version, vendor, product, deviceVersion, signatureId, name, severity, extension };
}

export interface LeefEvent {
  version: string;
  vendor: string;
  product: string;
  productVersion: string;
  eventId: string;
  delimiter: string;
  attributes: Record<string, string>;
}

/** LEEF 2.0: six header fields, the sixth the delimiter (a character, or its hex as x09 / 0x09). */
export function parseLeef(text: string): LeefEvent {
  const m = /^LEEF:(2\.0)\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|/.exec(text);
  if (!m) throw new Error(`not LEEF 2.0: ${text.slice(0, 60)}`);
  const spec = m[6]!;
  const delimiter = /^(0?x)[0-9a-fA-F]{2}$/.test(spec)
    ? String.fromCharCode(Number.parseInt(spec.replace(/^0?x/, ''), 16))
    : spec;
  if (delimiter.length !== 1) throw new Error(`bad LEEF delimiter ${spec}`);
  const attributes: Record<string, string> = {};
  for (const pair of text.slice(m[0].length).split(delimiter)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`LEEF attribute without key: ${pair}`);
    const k = pair.slice(0, eq);
    if (k in attributes) throw new Error(`LEEF key ${k} twice`);
    attributes[k] = pair.slice(eq + 1);
  }
  return {
    version: m[1]!,
    vendor: m[2]!,
    product: m[3]!,
    productVersion: m[4]!,
    eventId: m[5]!,
    delimiter,
    attributes,
  };
}
