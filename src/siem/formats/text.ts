/**
 * Text helpers shared by the formats. Syslog has no escape for line breaks (RFC 6587 LF framing would
 * split the message at one) and CEF headers, LEEF attributes and syslog headers have none for control
 * characters either, so formats replace them; JSON escapes them itself.
 */

/** C0 controls, DEL and C1 controls (U+0080-U+009F, NEL among them). */
export function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

/** Control characters (tab, CR, LF included) become spaces. */
export function oneLine(text: string): string {
  let out: string[] | null = null;
  for (let i = 0; i < text.length; i++) {
    if (isControl(text.charCodeAt(i))) {
      out ??= [...text.slice(0, i)];
      out.push(' ');
    } else if (out) {
      out.push(text[i]!);
    }
  }
  return out ? out.join('') : text;
}

/** Keeps printable ASCII (33-126) only, for syslog header fields (RFC 5424 §6: PRINTUSASCII). */
export function printableAscii(text: string, max: number): string {
  const kept = text.replace(/[^!-~]/g, '');
  return (kept || '-').slice(0, max);
}

/** UTF-8 length in bytes. */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * The first `max` characters (code points, so a surrogate pair is never split), with "…" when
 * something was cut.
 */
export function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = Math.max(0, max - 1);
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

/**
 * JSON text with every control character escaped: JSON.stringify escapes C0 controls but leaves DEL
 * and C1 controls (U+0085 NEL among them) raw, which other formats would have to replace. NUL in
 * strings becomes U+FFFD: receivers written in C (rsyslog's mmjsonparse, syslog-ng's json-parser, on
 * json-c) end a string at an escaped NUL and lose the rest.
 */
export function jsonText(value: unknown): string {
  const text =
    JSON.stringify(value, (_key, v: unknown) =>
      typeof v === 'string' ? v.replaceAll('\u0000', '\uFFFD') : v,
    ) ?? 'null';
  let out = '';
  let from = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x7f && code <= 0x9f) {
      out += `${text.slice(from, i)}\\u00${code.toString(16)}`;
      from = i + 1;
    }
  }
  return from === 0 ? text : out + text.slice(from);
}
