import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TrafficBuilder, UDP } from './packets.js';

/**
 * A synthetic but realistic office network for measuring detection quality: a couple of hundred workstations
 * browsing, resolving names through the internal resolvers, syncing time, checking in with an EDR
 * cloud every minute (a legitimate beacon), joining Teams-like UDP calls, talking to the domain
 * controller and file server; servers doing mail, backups (a large nightly-style upload), monitoring
 * and a vulnerability scanner sweeping everything (allowlisted, as operators do); admins on RDP and
 * SSH; the Internet's background noise against a DMZ. Into it go labelled attacks, one for each
 * detector. Everything comes from a seeded PRNG: the same seed gives the same packets.
 *
 * Addresses: internal 10.10.0.0/16 (servers 10.10.0.x, workstations 10.10.1-2.x, admins 10.10.3.x,
 * DMZ 10.10.5.x); external in documentation and benchmark ranges (192.0.2.0/24, 198.51.100.0/24,
 * 203.0.113.0/24, 198.18.0.0/15) plus a pool of "Internet" hosts in 100.64.0.0/10 used as ordinary
 * web sites (shared address space, never on an indicator list here).
 */

export interface AttackLabel {
  readonly id: string;
  readonly description: string;
  /** Detectors whose finding counts as detecting it (the first is the one meant for it). */
  readonly detectors: readonly string[];
  /** A finding detects the attack when one of these is its src_ip, dst_ip or among related_ips. */
  readonly entities: readonly string[];
  readonly startMs: number;
  readonly endMs: number;
}

export interface Scenario {
  readonly labels: readonly AttackLabel[];
  readonly startMs: number;
  readonly endMs: number;
  readonly hosts: number;
  /** Indicator lists the scenario's threat-intel and mining attacks need: file name → content. */
  readonly indicatorFiles: Readonly<Record<string, string>>;
  /** Known infrastructure an operator would configure (allowlists, sanctioned resolvers). */
  readonly infrastructure: {
    readonly resolvers: readonly string[];
    readonly vulnerabilityScanner: string;
    readonly backupServer: string;
    readonly backupTarget: string;
    readonly monitoring: string;
  };
}

export interface ScenarioOptions {
  /** Epoch µs of the first minute. */
  readonly startUs: number;
  readonly minutes?: number;
  readonly workstations?: number;
  readonly seed?: number;
  /** false: background only (for the false-positive rate alone). */
  readonly attacks?: boolean;
}

const S = 1_000_000;
const MIN = 60 * S;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function buildScenario(b: TrafficBuilder, options: ScenarioOptions): Scenario {
  const random = prng(options.seed ?? 20261203);
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const minutes = options.minutes ?? 300;
  const start = options.startUs;
  const end = start + minutes * MIN;
  const ephemeral = () => int(32_768, 60_999);

  const workstations: string[] = [];
  const count = options.workstations ?? 180;
  for (let i = 0; i < count; i++) workstations.push(`10.10.${1 + Math.floor(i / 250)}.${10 + (i % 250)}`);
  const admins = ['10.10.3.1', '10.10.3.2', '10.10.3.3'];
  const servers = Array.from({ length: 30 }, (_, i) => `10.10.0.${100 + i}`);
  const resolvers = ['10.10.0.53', '10.10.0.54'];
  const dc = '10.10.0.5';
  const fileServer = '10.10.0.10';
  const mail = '10.10.0.25';
  const ntp = '10.10.0.123';
  const monitoring = '10.10.0.30';
  const scanner = '10.10.0.250';
  const backupServer = '10.10.0.200';
  const backupTarget = '203.0.113.200';
  const edrCloud = '198.51.100.10';
  const cdn = '203.0.113.50';
  const dmzWeb = '10.10.5.80';
  const dmzMail = '10.10.5.25';
  const bastion = '10.10.5.22';
  // Web sites: a Zipf-like popularity over 1,500 addresses.
  const sites = Array.from({ length: 1500 }, (_, i) => `100.${64 + (i >> 8)}.${i & 255}.${1 + (i % 200)}`);
  const site = () => sites[Math.min(sites.length - 1, Math.floor(sites.length * random() ** 3))]!;
  const upstream = ['192.0.2.1', '192.0.2.2', '198.51.100.1', '198.51.100.2'];

  // --- Background -----------------------------------------------------------------------------
  for (const host of workstations) {
    // Browsing: sessions at about one every two minutes, each after a DNS lookup.
    for (let t = start + int(0, 2 * MIN); t < end; t += int(20 * S, 4 * MIN)) {
      const resolver = pick(resolvers);
      b.udpExchange(t, host, resolver, ephemeral(), 53, int(30, 60), int(60, 300));
      const exchanges = Array.from({ length: int(1, 6) }, () => ({
        up: int(300, 1800),
        down: int(1_000, 200_000),
      }));
      b.tcpSession({
        t: t + 20_000,
        client: host,
        server: site(),
        sport: ephemeral(),
        dport: random() < 0.9 ? 443 : 80,
        exchanges,
        gapUs: int(1_000, 30_000),
        mss: 8_000,
      });
    }
    // EDR check-in every 60 s (a perfect beacon every host shares: high prevalence).
    for (let t = start + int(0, MIN); t < end; t += 60 * S + int(-500_000, 500_000)) {
      b.tcpSession({
        t,
        client: host,
        server: edrCloud,
        sport: ephemeral(),
        dport: 443,
        exchanges: [{ up: int(750, 850), down: int(380, 420) }],
      });
    }
    // NTP to the internal server every 16 minutes; directory and file shares now and then.
    for (let t = start + int(0, 16 * MIN); t < end; t += 16 * MIN)
      b.udpExchange(t, host, ntp, 123, 123, 48, 48);
    for (let t = start + int(0, 10 * MIN); t < end; t += int(5 * MIN, 15 * MIN)) {
      b.tcpSession({
        t,
        client: host,
        server: dc,
        sport: ephemeral(),
        dport: pick([88, 389, 445]),
        exchanges: [{ up: int(200, 2000), down: int(200, 4000) }],
      });
      b.tcpSession({
        t: t + S,
        client: host,
        server: fileServer,
        sport: ephemeral(),
        dport: 445,
        exchanges: [{ up: int(500, 5000), down: int(5_000, 2_000_000) }],
        mss: 16_000,
      });
    }
  }
  // Teams-like calls: UDP media both ways to a relay, 10 packets/s of ~1,000 bytes, 10-25 minutes.
  for (let i = 0; i < Math.ceil(count / 16); i++) {
    const host = pick(workstations);
    const relay = `198.18.5.${int(1, 40)}`;
    const port = ephemeral();
    const media = pick([3478, 3479, 3480, 3481]);
    const from = start + int(0, Math.max(1, minutes - 25) * MIN);
    const until = from + int(10, 25) * MIN;
    for (let t = from; t < until; t += 100_000) {
      b.packet({ t, src: host, dst: relay, proto: UDP, sport: port, dport: media, payload: int(900, 1100) });
      b.packet({
        t: t + 40_000,
        src: relay,
        dst: host,
        proto: UDP,
        sport: media,
        dport: port,
        payload: int(900, 1100),
      });
    }
  }
  // Resolvers forward to upstream servers (sanctioned); the mail server sends and receives.
  // Cache misses arrive as the clients' lookups do: a Poisson stream (exponential gaps, mean 400 ms).
  for (let t = start; t < end; t += Math.max(1_000, Math.round(-Math.log(1 - random()) * 400_000))) {
    b.udpExchange(t, pick(resolvers), pick(upstream), ephemeral(), 53, int(40, 80), int(80, 500));
  }
  for (let t = start; t < end; t += int(20 * S, 90 * S)) {
    b.tcpSession({
      t,
      client: mail,
      server: site(),
      sport: ephemeral(),
      dport: 25,
      exchanges: [{ up: int(2_000, 60_000), down: int(300, 800) }],
    });
    b.tcpSession({
      t: t + int(0, 10 * S),
      client: `198.51.100.${int(20, 250)}`,
      server: dmzMail,
      sport: ephemeral(),
      dport: 25,
      exchanges: [{ up: int(2_000, 80_000), down: int(300, 800) }],
    });
  }
  // The public web server: many Internet clients, normal sessions.
  for (let t = start; t < end; t += int(200_000, 2 * S)) {
    b.tcpSession({
      t,
      client: `100.${int(64, 127)}.${int(0, 255)}.${int(1, 254)}`,
      server: dmzWeb,
      sport: ephemeral(),
      dport: 443,
      exchanges: [{ up: int(300, 1500), down: int(2_000, 80_000) }],
      mss: 8_000,
    });
  }
  // Internet background noise at the DMZ: a stray SYN from a random source now and then.
  for (let t = start; t < end; t += int(2 * S, 20 * S)) {
    b.synProbe(
      t,
      `${int(1, 223)}.${int(0, 255)}.${int(0, 255)}.${int(1, 254)}`,
      pick([dmzWeb, dmzMail, bastion]),
      ephemeral(),
      pick([22, 23, 80, 443, 445, 3389, 8080]),
      'rst',
    );
  }
  // Monitoring: every minute, a ping and a port check of each server (completed connections).
  for (let t = start; t < end; t += MIN) {
    for (const [n, server] of servers.entries()) {
      b.echo(t + n * 100_000, monitoring, server, 7, Math.floor((t - start) / MIN), 56);
      b.tcpSession({
        t: t + n * 100_000 + 50_000,
        client: monitoring,
        server,
        sport: ephemeral(),
        dport: 443,
        exchanges: [{ up: 200, down: 400 }],
        close: 'rst',
      });
    }
  }
  // The vulnerability scanner sweeps the servers' top ports (allowlisted by the operator).
  for (let n = 0; n < servers.length; n++) {
    const t0 = start + 20 * MIN + n * 4 * S;
    for (let port = 1; port <= 100; port++)
      b.synProbe(
        t0 + port * 30_000,
        scanner,
        servers[n]!,
        50_000 + port,
        port,
        port === 22 || port === 443 ? 'synack' : 'rst',
      );
  }
  // Admins: long RDP and SSH sessions to a few servers.
  for (const admin of admins) {
    for (let k = 0; k < 3; k++) {
      const t = start + int(0, Math.max(1, minutes - 40) * MIN);
      const exchanges = Array.from({ length: 60 }, () => ({ up: int(100, 2_000), down: int(500, 30_000) }));
      b.tcpSession({
        t,
        client: admin,
        server: pick(servers),
        sport: ephemeral(),
        dport: pick([3389, 22]),
        exchanges,
        thinkUs: int(10, 40) * S,
      });
    }
  }
  // Backups: the backup server pulls from every server over SSH, then uploads to cloud storage.
  const backupAt = start + 30 * MIN;
  for (const [n, server] of servers.entries()) {
    b.tcpSession({
      t: backupAt + n * 10 * S,
      client: backupServer,
      server,
      sport: ephemeral(),
      dport: 22,
      exchanges: [{ up: 2_000, down: 50_000_000 }],
      mss: 64_000,
      gapUs: 500,
    });
  }
  b.tcpSession({
    t: backupAt + 6 * MIN,
    client: backupServer,
    server: backupTarget,
    sport: ephemeral(),
    dport: 443,
    exchanges: [{ up: 1_500_000_000, down: 20_000 }],
    mss: 64_000,
    gapUs: 300,
  });
  // Software updates: some hosts download from a CDN.
  for (let i = 0; i < 20; i++) {
    b.tcpSession({
      t: start + int(0, minutes - 5) * MIN,
      client: pick(workstations),
      server: cdn,
      sport: ephemeral(),
      dport: 443,
      exchanges: [{ up: 2_000, down: int(50, 300) * 1_000_000 }],
      mss: 64_000,
      gapUs: 200,
    });
  }

  const labels: AttackLabel[] = [];
  const label = (l: Omit<AttackLabel, 'startMs' | 'endMs'>, fromUs: number, toUs: number) =>
    labels.push({ ...l, startMs: Math.floor(fromUs / 1000), endMs: Math.ceil(toUs / 1000) });
  const indicatorFiles: Record<string, string> = {};

  if (options.attacks !== false) {
    const at = (minute: number) => start + Math.min(minute, minutes - 8) * MIN;
    // A1: an external vertical scan of the public web server.
    let t = at(15);
    for (let port = 1; port <= 1024; port++)
      b.synProbe(t + port * 100_000, '198.51.100.66', dmzWeb, 41_000, port, port === 443 ? 'synack' : 'rst');
    label(
      {
        id: 'external-port-scan',
        description: 'external SYN scan of 1,024 ports',
        detectors: ['vertical-port-scan'],
        entities: ['198.51.100.66'],
      },
      t,
      t + 103 * S,
    );
    // A2 + A5: a compromised workstation sweeps SMB, then moves laterally; it also beacons (A9).
    const victim = workstations[7]!;
    t = at(25);
    for (let i = 0; i < 200; i++)
      b.synProbe(
        t + i * 600_000,
        victim,
        `10.10.2.${10 + i}`,
        ephemeral(),
        445,
        i % 4 === 0 ? 'synack' : 'none',
      );
    label(
      {
        id: 'internal-sweep',
        description: 'SMB sweep of 200 hosts',
        detectors: ['horizontal-sweep'],
        entities: [victim],
      },
      t,
      t + 120 * S,
    );
    t = at(30);
    for (let i = 0; i < 25; i++) {
      b.tcpSession({
        t: t + i * 8 * S,
        client: victim,
        server: `10.10.1.${100 + i}`,
        sport: ephemeral(),
        dport: 445,
        exchanges: [{ up: 2_500_000, down: 20_000 }],
        mss: 32_000,
      });
    }
    label(
      {
        id: 'lateral-smb',
        description: 'SMB fan-out with file copies to 25 hosts',
        detectors: ['lateral-movement'],
        entities: [victim],
      },
      t,
      t + 210 * S,
    );
    t = start + 2 * MIN;
    for (let n = 0; t + n * 120 * S < end; n++) {
      b.tcpSession({
        t: t + n * 120 * S + int(-2 * S, 2 * S),
        client: victim,
        server: '198.51.100.200',
        sport: ephemeral(),
        dport: 443,
        exchanges: [{ up: int(400, 450), down: int(200, 300) }],
      });
    }
    label(
      {
        id: 'beacon',
        description: 'HTTPS beacon every 120 s ± 2 s for the whole scenario',
        detectors: ['beaconing'],
        entities: ['198.51.100.200'],
      },
      t,
      end,
    );
    // A3: SSH brute force on the bastion.
    t = at(20);
    for (let i = 0; i < 120; i++) {
      b.tcpSession({
        t: t + i * 10 * S,
        client: '203.0.113.99',
        server: bastion,
        sport: ephemeral(),
        dport: 22,
        exchanges: [{ up: int(1_000, 1_100), down: int(1_300, 1_400) }],
        close: 'fin',
      });
    }
    label(
      {
        id: 'ssh-brute-force',
        description: '120 SSH logins in 20 minutes',
        detectors: ['brute-force'],
        entities: ['203.0.113.99'],
      },
      t,
      t + 1200 * S,
    );
    // A4: RDP reached from the Internet, established.
    t = at(35);
    b.tcpSession({
      t,
      client: '192.0.2.77',
      server: workstations[40]!,
      sport: ephemeral(),
      dport: 3389,
      exchanges: Array.from({ length: 40 }, () => ({ up: int(200, 3_000), down: int(2_000, 60_000) })),
      thinkUs: 10 * S,
    });
    label(
      {
        id: 'rdp-from-internet',
        description: 'an established RDP session from the Internet',
        detectors: ['exposed-remote-service'],
        entities: ['192.0.2.77'],
      },
      t,
      t + 420 * S,
    );
    // A6: DNS reflection at a DMZ host: 40 resolvers answer queries it never sent.
    t = at(45);
    for (let i = 0; i < 60_000; i++) {
      b.packet({
        t: t + i * 1_000,
        src: `192.0.2.${100 + (i % 40)}`,
        dst: '10.10.5.90',
        proto: UDP,
        sport: 53,
        dport: int(1024, 65535),
        payload: int(2_900, 3_100),
      });
    }
    label(
      {
        id: 'dns-amplification',
        description: 'DNS reflection, 60,000 responses of ~3 kB in 60 s from 40 reflectors',
        detectors: ['udp-amplification', 'volumetric-flood'],
        entities: ['10.10.5.90'],
      },
      t,
      t + 60 * S,
    );
    // A7: SYN flood with spoofed sources at the web server.
    t = at(50);
    for (let i = 0; i < 250_000; i++) {
      b.packet({
        t: t + i * 40,
        src: `${int(1, 223)}.${int(0, 255)}.${int(0, 255)}.${int(1, 254)}`,
        dst: dmzWeb,
        proto: 6,
        sport: int(1024, 65535),
        dport: 443,
        flags: 0x02,
      });
    }
    label(
      {
        id: 'syn-flood',
        description: 'SYN flood, 25,000 SYN/s for 10 s from random spoofed sources',
        detectors: ['syn-flood', 'volumetric-flood'],
        entities: [dmzWeb],
      },
      t,
      t + 10 * S,
    );
    // A8: exfiltration of 3 GB to a destination nobody else talks to.
    t = at(55);
    b.tcpSession({
      t,
      client: workstations[77]!,
      server: '203.0.113.250',
      sport: ephemeral(),
      dport: 443,
      exchanges: [{ up: 3_000_000_000, down: 50_000 }],
      mss: 64_000,
      gapUs: 150,
    });
    label(
      {
        id: 'exfiltration',
        description: '3 GB uploaded to a rare destination',
        detectors: ['exfiltration'],
        entities: [workstations[77]!, '203.0.113.250'],
      },
      t,
      t + 500 * S,
    );
    // A10: a long tunnel-like connection with keep-alives, open for the rest of the scenario (a
    // connection has to last 4 hours to count as long: RITA's first tier).
    t = start + 20 * MIN;
    const longEnd = end - MIN;
    b.tcpSession({
      t,
      client: workstations[88]!,
      server: '192.0.2.150',
      sport: ephemeral(),
      dport: 443,
      exchanges: Array.from({ length: Math.floor((longEnd - t) / (60 * S)) }, () => ({
        up: int(100, 400),
        down: int(100, 400),
      })),
      thinkUs: 60 * S,
      close: 'none',
    });
    label(
      {
        id: 'long-connection',
        description: 'one TCP connection open for 4 h 39 min',
        detectors: ['long-connection'],
        entities: [workstations[88]!, '192.0.2.150'],
      },
      t,
      longEnd,
    );
    // A11: DNS tunnelling straight to an external resolver.
    t = at(40);
    for (let i = 0; i < 15_000; i++)
      b.udpExchange(
        t + i * 40_000,
        workstations[99]!,
        '198.51.100.53',
        ephemeral(),
        53,
        int(180, 240),
        int(250, 350),
      );
    label(
      {
        id: 'dns-tunnel',
        description: '1,500 large DNS queries a minute to an outside resolver for 10 minutes',
        detectors: ['dns-tunnelling'],
        entities: [workstations[99]!],
      },
      t,
      t + 600 * S,
    );
    // A12: ICMP tunnel: large echo payloads both ways.
    t = at(42);
    for (let i = 0; i < 3_000; i++)
      b.echo(t + i * 200_000, workstations[111]!, '203.0.113.7', 0x4242, i, int(900, 1_100));
    label(
      {
        id: 'icmp-tunnel',
        description: '3,000 echo exchanges of ~1 kB in 10 minutes',
        detectors: ['icmp-tunnelling'],
        entities: [workstations[111]!, '203.0.113.7'],
      },
      t,
      t + 600 * S,
    );
    // A13: contact with a listed C2 address, and Tor.
    t = at(60);
    for (let i = 0; i < 5; i++)
      b.tcpSession({
        t: t + i * 30 * S,
        client: workstations[120]!,
        server: '192.0.2.66',
        sport: ephemeral(),
        dport: 8080,
        exchanges: [{ up: 600, down: 4_000 }],
      });
    label(
      {
        id: 'threat-intel-c2',
        description: 'connections to a listed C2 address',
        detectors: ['threat-intel'],
        entities: ['192.0.2.66'],
      },
      t,
      t + 150 * S,
    );
    t = at(62);
    b.tcpSession({
      t,
      client: workstations[130]!,
      server: '198.51.100.9',
      sport: ephemeral(),
      dport: 9001,
      exchanges: Array.from({ length: 20 }, () => ({ up: 600, down: 6_000 })),
      thinkUs: 5 * S,
    });
    label(
      {
        id: 'tor',
        description: 'a session with a Tor relay',
        detectors: ['threat-intel'],
        entities: ['198.51.100.9'],
      },
      t,
      t + 110 * S,
    );
    indicatorFiles['malicious.txt'] = '# C2 addresses\n192.0.2.66\n';
    indicatorFiles['tor-exits.txt'] = '# category: tor\n198.51.100.9\n';
    // A14: crypto-mining on a stratum port to a listed pool.
    t = at(30);
    b.tcpSession({
      t,
      client: workstations[140]!,
      server: '203.0.113.33',
      sport: ephemeral(),
      dport: 3333,
      exchanges: Array.from({ length: 80 }, () => ({ up: int(150, 250), down: int(150, 300) })),
      thinkUs: 30 * S,
      close: 'none',
    });
    label(
      {
        id: 'crypto-mining',
        description: 'a 40-minute stratum session to a mining pool',
        detectors: ['crypto-mining', 'threat-intel'],
        entities: [workstations[140]!, '203.0.113.33'],
      },
      t,
      t + 2400 * S,
    );
    indicatorFiles['mining-pools.txt'] = '# category: mining\n203.0.113.33\n';
    // A15: SSH-like interactive session on a non-standard port, outbound.
    t = at(33);
    b.tcpSession({
      t,
      client: workstations[150]!,
      server: '192.0.2.200',
      sport: ephemeral(),
      dport: 2222,
      exchanges: Array.from({ length: 120 }, () => ({ up: int(40, 200), down: int(40, 600) })),
      thinkUs: 15 * S,
    });
    label(
      {
        id: 'non-standard-port',
        description: 'a 30-minute interactive session to port 2222',
        detectors: ['non-standard-port'],
        entities: [workstations[150]!, '192.0.2.200'],
      },
      t,
      t + 1800 * S,
    );
    // A16: UDP flood at a DMZ host from 200 sources.
    t = at(65);
    for (let i = 0; i < 240_000; i++) {
      b.packet({
        t: t + i * 40,
        src: `198.18.100.${1 + (i % 200)}`,
        dst: '10.10.5.100',
        proto: UDP,
        sport: int(1024, 65535),
        dport: int(1, 65535),
        payload: 1_200,
      });
    }
    label(
      {
        id: 'udp-flood',
        description: 'UDP flood, 25,000 packets/s for ~10 s from 200 sources',
        detectors: ['volumetric-flood'],
        entities: ['10.10.5.100'],
      },
      t,
      t + 10 * S,
    );
  }

  return {
    labels,
    startMs: Math.floor(start / 1000),
    endMs: Math.ceil(end / 1000),
    hosts: workstations.length + admins.length + servers.length + 8,
    indicatorFiles,
    infrastructure: { resolvers, vulnerabilityScanner: scanner, backupServer, backupTarget, monitoring },
  };
}

/**
 * The detection settings an operator of this network would write: the vulnerability scanner and the
 * monitoring server allowlisted, the backup jobs allowlisted where they look like exfiltration and
 * lateral movement, the internal resolvers sanctioned, and the indicator lists written into `dir`.
 */
export function operatorConfig(s: Scenario, dir: string): Record<string, unknown> {
  const lists = Object.entries(s.indicatorFiles).map(([name, content]) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  });
  const infra = s.infrastructure;
  return {
    threatIntel: lists,
    internalNetworks: ['10.0.0.0/8'],
    allowlist: { src: [`${infra.vulnerabilityScanner}/32`, `${infra.monitoring}/32`], dst: [] },
    detectors: {
      exfiltration: { allowlist: { src: [`${infra.backupServer}/32`], dst: [`${infra.backupTarget}/32`] } },
      'lateral-movement': { allowlist: { src: [`${infra.backupServer}/32`], dst: [] } },
      'dns-tunnelling': { params: { sanctionedResolvers: infra.resolvers.map((r) => `${r}/32`) } },
    },
  };
}
