import ipaddr from 'ipaddr.js';
import { addressBytesToString, type CidrMatcher, createCidrMatcher, parseAddress } from '../common/ip.js';

/** An inclusive address range as ClickHouse IPv6 literals (IPv4 as ::ffff:a.b.c.d). */
export interface AddressRange {
  readonly lo: string;
  readonly hi: string;
}

/** The first and last address of a CIDR, in the 16-byte representation of the flows table. */
export function cidrRange(cidr: string): AddressRange {
  const [addr, bits] = ipaddr.parseCIDR(cidr);
  const v6 = addr.kind() === 'ipv4' ? (addr as ipaddr.IPv4).toIPv4MappedAddress() : (addr as ipaddr.IPv6);
  const prefix = addr.kind() === 'ipv4' ? bits + 96 : bits;
  const lo = Uint8Array.from(v6.toByteArray());
  const hi = Uint8Array.from(lo);
  for (let bit = prefix; bit < 128; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    lo[byte] = lo[byte]! & ~mask;
    hi[byte] = hi[byte]! | mask;
  }
  return { lo: ipv6Literal(lo), hi: ipv6Literal(hi) };
}

function ipv6Literal(bytes: Uint8Array): string {
  return ipaddr.fromByteArray(Array.from(bytes)).toString();
}

/**
 * A set of CIDRs usable on both sides: matched in JavaScript (allowlists, findings) and in SQL, as
 * arrays of range bounds passed as query parameters:
 * `arrayExists((lo, hi) -> addr BETWEEN lo AND hi, {p_lo:Array(IPv6)}, {p_hi:Array(IPv6)})`.
 */
export class AddressSet {
  readonly cidrs: readonly string[];
  readonly lo: readonly string[];
  readonly hi: readonly string[];
  private readonly matcher: CidrMatcher;

  constructor(cidrs: readonly string[]) {
    this.cidrs = [...cidrs];
    const ranges = cidrs.map(cidrRange);
    this.lo = ranges.map((r) => r.lo);
    this.hi = ranges.map((r) => r.hi);
    this.matcher = createCidrMatcher(cidrs);
  }

  get size(): number {
    return this.cidrs.length;
  }

  /** True when `address` (IPv4, IPv6 or ::ffff:-mapped literal) is in one of the CIDRs. */
  has(address: string | null | undefined): boolean {
    if (!address || this.cidrs.length === 0) return false;
    const bytes = parseAddress(address);
    return bytes !== null && this.matcher.matches(bytes);
  }
}

/** The canonical text of an address from ClickHouse (::ffff:a.b.c.d becomes a.b.c.d); null for ::. */
export function displayAddress(value: string | null | undefined): string | null {
  if (!value) return null;
  const bytes = parseAddress(value);
  if (!bytes) return value;
  if (bytes.every((b) => b === 0)) return null;
  return addressBytesToString(bytes);
}
