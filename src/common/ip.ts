import ipaddr from 'ipaddr.js';

/**
 * Addresses travel as 16-byte IPv6 (IPv4 as ::ffff:a.b.c.d), the representation the flows table uses.
 */

export function ipv4ToString(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Formats 16 bytes at `off` the way ClickHouse prints an IPv6 column (mapped IPv4 as ::ffff:a.b.c.d). */
export function ipv6BytesToString(buf: Uint8Array, off = 0): string {
  const bytes = Array.from(buf.subarray(off, off + 16));
  return ipaddr.fromByteArray(bytes).toString();
}

/** Mapped IPv4 addresses come back as dotted quads; everything else as compressed IPv6. */
export function addressBytesToString(buf: Uint8Array, off = 0): string {
  if (isMappedIPv4(buf, off)) {
    return `${buf[off + 12]}.${buf[off + 13]}.${buf[off + 14]}.${buf[off + 15]}`;
  }
  return ipv6BytesToString(buf, off);
}

export function isMappedIPv4(buf: Uint8Array, off = 0): boolean {
  for (let i = 0; i < 10; i++) if (buf[off + i] !== 0) return false;
  return buf[off + 10] === 0xff && buf[off + 11] === 0xff;
}

/** Parses an IPv4 or IPv6 literal into 16 bytes (IPv4-mapped for IPv4); null when not an address. */
export function parseAddress(text: string): Uint8Array | null {
  const bare =
    text.startsWith('::ffff:') && ipaddr.IPv4.isValidFourPartDecimal(text.slice(7)) ? text.slice(7) : text;
  if (!ipaddr.isValid(bare)) return null;
  const parsed = ipaddr.parse(bare);
  const v6 =
    parsed.kind() === 'ipv4' ? (parsed as ipaddr.IPv4).toIPv4MappedAddress() : (parsed as ipaddr.IPv6);
  return Uint8Array.from(v6.toByteArray());
}

/** The canonical text of an address: dotted quad for IPv4 and mapped IPv4, compressed IPv6 otherwise. */
export function canonicalAddress(text: string): string | null {
  const bytes = parseAddress(text);
  return bytes ? addressBytesToString(bytes) : null;
}

export interface CidrMatcher {
  readonly size: number;
  matches(address: Uint8Array): boolean;
}

/** Matches 16-byte addresses against a list of CIDRs (IPv4 CIDRs match mapped addresses). */
export function createCidrMatcher(cidrs: readonly string[]): CidrMatcher {
  const ranges = cidrs.map((c) => {
    const [addr, bits] = ipaddr.parseCIDR(c);
    const v6 = addr.kind() === 'ipv4' ? (addr as ipaddr.IPv4).toIPv4MappedAddress() : (addr as ipaddr.IPv6);
    return { bytes: Uint8Array.from(v6.toByteArray()), bits: addr.kind() === 'ipv4' ? bits + 96 : bits };
  });
  return {
    size: ranges.length,
    matches(address) {
      for (const r of ranges) {
        if (prefixEquals(address, r.bytes, r.bits)) return true;
      }
      return false;
    },
  };
}

function prefixEquals(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  let i = 0;
  for (; bits >= 8; bits -= 8, i++) if (a[i] !== b[i]) return false;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return ((a[i]! ^ b[i]!) & mask) === 0;
}

export function isValidCidr(text: string): boolean {
  try {
    ipaddr.parseCIDR(text);
    return true;
  } catch {
    return false;
  }
}

/** host:port or [v6]:port, as used by every listen/endpoint setting. */
export function parseHostPort(text: string): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const host = m[1]!;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return null;
  if (!ipaddr.isValid(host) && !/^[A-Za-z0-9.-]+$/.test(host)) return null;
  return { host, port };
}
