import { execFileSync } from 'node:child_process';

/**
 * tshark as an independent oracle for NetFlow v5/v9 and IPFIX exports: it decodes a capture of export
 * datagrams with Wireshark's cflow dissector (`-T json`), and this module turns its output into flow
 * records with absolute times, computed from the same header and option fields a collector has.
 */

/** One flow data record (options records are counted, not returned). */
export interface OracleRecord {
  readonly version: number;
  readonly domain: number;
  readonly templateId: number;
  readonly src: string;
  readonly dst: string;
  /** 0 when the record has no port field (softflowd's ICMP templates). */
  readonly sport: number;
  readonly dport: number;
  readonly proto: number;
  /**
   * ICMP type * 256 + code for ICMP and ICMPv6 records: from icmpTypeCodeIPv4/IPv6 or the type and
   * code elements when the record has them, else the destination port (the NetFlow v5 convention).
   * null for other protocols.
   */
  readonly icmpTypeCode: number | null;
  readonly bytes: number;
  readonly packets: number;
  /** Absolute flow start and end, epoch milliseconds. */
  readonly startMs: number;
  readonly endMs: number;
}

/** One export packet (datagram), as the sequence-number checks need it. */
export interface OraclePacket {
  readonly version: number;
  readonly domain: number;
  readonly sequence: number;
  readonly dataRecords: number;
  readonly optionRecords: number;
}

export interface OracleExport {
  readonly packets: OraclePacket[];
  readonly records: OracleRecord[];
  readonly optionRecords: number;
}

/** The tshark version line, or null when tshark cannot be run. */
export function tsharkVersion(): string | null {
  try {
    return execFileSync('tshark', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')[0]!
      .trim();
  } catch {
    return null;
  }
}

type Json = string | Json[] | { [key: string]: Json };
type Tree = { [key: string]: Json };

/**
 * Decodes the export datagrams sent to `port` in `file`. TZ=UTC because tshark prints absolute times
 * in the local zone; `--no-duplicate-keys` turns repeated fields into arrays instead of JSON objects
 * with duplicate keys (which JSON.parse would silently collapse).
 */
export function tsharkDecode(file: string, port: number): OracleExport {
  const out = execFileSync(
    'tshark',
    ['-n', '-r', file, '-d', `udp.port==${port},cflow`, '-T', 'json', '--no-duplicate-keys', '-J', 'cflow'],
    {
      encoding: 'utf8',
      maxBuffer: 512 * 1024 * 1024,
      env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const frames = JSON.parse(out) as Array<{ _source: { layers: Tree } }>;
  const decoder = new ExportDecoder();
  for (const frame of frames) {
    const layer = frame._source.layers['cflow'];
    if (layer === undefined) throw new Error(`${file}: tshark did not decode a frame as cflow`);
    // Several PDUs in one datagram would come back as an array of cflow trees.
    for (const pdu of Array.isArray(layer) ? layer : [layer]) decoder.pdu(pdu as Tree);
  }
  return { packets: decoder.packets, records: decoder.records, optionRecords: decoder.optionRecords };
}

/** What a template says about its records: whether they are options, and their time elements. */
interface TemplateInfo {
  readonly options: boolean;
  readonly fieldTypes: ReadonlySet<number>;
}

class ExportDecoder {
  readonly packets: OraclePacket[] = [];
  readonly records: OracleRecord[] = [];
  optionRecords = 0;
  /** Keyed by version/domain/template id, as tshark itself keeps them. */
  private readonly templates = new Map<string, TemplateInfo>();
  /** IPFIX systemInitTimeMilliseconds (IE 160) per domain, from options data. */
  private readonly systemInitMs = new Map<number, number>();

  pdu(tree: Tree): void {
    const version = int(text(tree, 'cflow.version'));
    if (version === 5) this.v5(tree);
    else if (version === 9 || version === 10) this.templated(tree, version);
    else throw new Error(`unexpected cflow version ${version}`);
  }

  private v5(tree: Tree): void {
    const stamp = subtree(tree, 'cflow.timestamp_tree');
    // The v5 header has unix_secs and unix_nsecs; sysUpTime is shown in seconds with ms precision.
    const exportMs =
      int(text(stamp, 'cflow.unix_secs')) * 1000 + Math.floor(int(text(stamp, 'cflow.unix_nsecs')) / 1e6);
    const uptimeMs = secondsToMs(text(tree, 'cflow.sysuptime'));
    let count = 0;
    for (const [key, value] of Object.entries(tree)) {
      if (!key.startsWith('pdu ')) continue;
      const r = value as Tree;
      this.records.push(this.record(r, 5, 0, 0, (rel) => exportMs - (uptimeMs - rel), true));
      count++;
    }
    if (count !== int(text(tree, 'cflow.count')))
      throw new Error(`v5 count ${text(tree, 'cflow.count')} != ${count}`);
    this.packets.push({
      version: 5,
      domain: int(text(tree, 'cflow.engine_type')) * 256 + int(text(tree, 'cflow.engine_id')),
      sequence: int(text(tree, 'cflow.sequence')),
      dataRecords: count,
      optionRecords: 0,
    });
  }

  private templated(tree: Tree, version: 9 | 10): void {
    const domain = int(text(tree, version === 9 ? 'cflow.source_id' : 'cflow.od_id'));
    const stamp = subtree(tree, 'cflow.timestamp_tree');
    // v9: sysUpTime-relative times against unix_secs (whole seconds) minus sysUpTime. IPFIX has no
    // sysUpTime in its header: relative times count from systemInitTimeMilliseconds (options data).
    const exportMs = int(text(stamp, version === 9 ? 'cflow.unix_secs' : 'cflow.exporttime')) * 1000;
    const uptimeMs = version === 9 ? secondsToMs(text(tree, 'cflow.sysuptime')) : 0;
    let dataRecords = 0;
    let optionRecords = 0;
    for (const [key, value] of Object.entries(tree)) {
      const set = /^(?:FlowSet|Set) \d+ \[id=(\d+)\]/.exec(key);
      if (!set) continue;
      const setId = int(set[1]!);
      const body = value as Tree;
      if (setId <= 3) {
        this.learnTemplates(body, version, domain);
        continue;
      }
      const template = this.templates.get(`${version}/${domain}/${setId}`);
      if (!template) throw new Error(`set ${setId} before its template (tshark could not decode it)`);
      for (const [rk, rv] of Object.entries(body)) {
        if (!rk.startsWith('Flow ')) continue;
        const r = rv as Tree;
        if (template.options) {
          optionRecords++;
          const init = r['cflow.sys_init_time'];
          if (typeof init === 'string') this.systemInitMs.set(domain, dateToMs(init));
          continue;
        }
        dataRecords++;
        const relative = template.fieldTypes.has(22) || template.fieldTypes.has(21);
        let toAbsolute: (value: number) => number;
        if (!relative) {
          toAbsolute = (v) => v;
        } else if (version === 9) {
          toAbsolute = (rel) => exportMs - (uptimeMs - rel);
        } else {
          const init = this.systemInitMs.get(domain);
          if (init === undefined) throw new Error('IPFIX sysUpTime times before systemInitTimeMilliseconds');
          toAbsolute = (rel) => init + rel;
        }
        this.records.push(this.record(r, version, domain, setId, toAbsolute, false));
      }
    }
    this.optionRecords += optionRecords;
    this.packets.push({
      version,
      domain,
      sequence: int(text(tree, 'cflow.sequence')),
      dataRecords,
      optionRecords,
    });
  }

  private learnTemplates(body: Tree, version: number, domain: number): void {
    for (const [key, value] of Object.entries(body)) {
      const t = /^(Options )?Template \(Id = (\d+)/.exec(key);
      if (!t) continue;
      const fieldTypes = new Set<number>();
      for (const [fk, fv] of Object.entries(value as Tree)) {
        if (!fk.startsWith('Field (')) continue;
        const f = fv as Tree;
        const type = f['cflow.template_field_type'] ?? f['cflow.template_ipfix_field_type'];
        if (typeof type === 'string') fieldTypes.add(int(type));
      }
      this.templates.set(`${version}/${domain}/${t[2]}`, { options: t[1] !== undefined, fieldTypes });
    }
  }

  private record(
    r: Tree,
    version: number,
    domain: number,
    templateId: number,
    toAbsolute: (value: number) => number,
    v5: boolean,
  ): OracleRecord {
    const proto = int(text(r, 'cflow.protocol'));
    const sport = optionalInt(r, 'cflow.srcport') ?? 0;
    const dport = optionalInt(r, 'cflow.dstport') ?? 0;
    let icmpTypeCode: number | null = null;
    if (proto === 1 || proto === 58) {
      const v4 = r['cflow.icmp_type_code_ipv4'];
      const v6 = r['cflow.icmp_type_code_ipv6'];
      const v6Type = optionalInt(r, 'cflow.icmp_ipv6_type');
      if (typeof v4 === 'string') icmpTypeCode = int(v4);
      else if (typeof v6 === 'string') icmpTypeCode = int(v6);
      else if (v6Type !== undefined)
        icmpTypeCode = v6Type * 256 + (optionalInt(r, 'cflow.icmp_ipv6_code') ?? 0);
      else icmpTypeCode = dport;
    }
    const times = subtree(r, 'cflow.timedelta_tree');
    return {
      version,
      domain,
      templateId,
      src: text(r, v5 || r['cflow.srcaddr'] !== undefined ? 'cflow.srcaddr' : 'cflow.srcaddrv6'),
      dst: text(r, v5 || r['cflow.dstaddr'] !== undefined ? 'cflow.dstaddr' : 'cflow.dstaddrv6'),
      sport,
      dport,
      proto,
      icmpTypeCode,
      bytes: int(text(r, 'cflow.octets')),
      packets: int(text(r, 'cflow.packets')),
      startMs: toAbsolute(timeField(times, 'start')),
      endMs: toAbsolute(timeField(times, 'end')),
    };
  }
}

/**
 * A flow time as tshark shows it, in ms: `timestart`/`timeend` are seconds (relative to sysUpTime or
 * system init); `abstimestart`/`abstimeend` are dates. tshark labels a sysUpTime value of exactly 0 as
 * an absolute time ("Jan  1, 1970 00:00:00") because it tests the raw value for non-zero to choose the
 * label; the value itself is the same 0, which dateToMs returns, so both labels read as the raw value.
 */
function timeField(times: Tree, which: 'start' | 'end'): number {
  const relative = times[`cflow.time${which}`];
  if (typeof relative === 'string') return secondsToMs(relative);
  const absolute = times[`cflow.abstime${which}`];
  if (typeof absolute === 'string') return dateToMs(absolute);
  throw new Error(`record without a flow ${which} time: ${JSON.stringify(times)}`);
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "Mar  5, 2024 07:41:12.415000000 UTC" to epoch ms (truncating below the ms, like the exporters). */
export function dateToMs(value: string): number {
  const m = /^([A-Z][a-z]{2}) +(\d+), (\d{4}) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? UTC$/.exec(value);
  if (!m) throw new Error(`unexpected tshark date "${value}" (is TZ=UTC honoured?)`);
  const month = MONTHS.indexOf(m[1]!);
  const fraction = (m[7] ?? '').padEnd(3, '0').slice(0, 3);
  return Date.UTC(int(m[3]!), month, int(m[2]!), int(m[4]!), int(m[5]!), int(m[6]!)) + int(fraction);
}

/** "45.337000000" (seconds) to 45337 ms, exactly: parsed as text, not through a float. */
export function secondsToMs(value: string): number {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(value);
  if (!m) throw new Error(`unexpected tshark seconds "${value}"`);
  const ms = int(m[2]!) * 1000 + int((m[3] ?? '').padEnd(3, '0').slice(0, 3));
  return m[1] ? -ms : ms;
}

function text(tree: Tree, key: string): string {
  const value = tree[key];
  if (typeof value !== 'string')
    throw new Error(`tshark field ${key} missing or repeated: ${JSON.stringify(value)}`);
  return value;
}

function subtree(tree: Tree, key: string): Tree {
  const value = tree[key];
  if (value === undefined || typeof value === 'string' || Array.isArray(value)) {
    throw new Error(`tshark subtree ${key} missing`);
  }
  return value;
}

function optionalInt(tree: Tree, key: string): number | undefined {
  const value = tree[key];
  return typeof value === 'string' ? int(value) : undefined;
}

/** Decimal or 0x-hex text to a number; throws on anything else. */
function int(value: string): number {
  const n = /^0x[0-9a-f]+$/i.test(value) ? Number.parseInt(value, 16) : Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: "${value}"`);
  return n;
}
