/**
 * Export sequence numbers per (exporter, version, domain), compared modulo 2^32 (RFC 3954 §5.1,
 * RFC 7011 §3.1). Units differ by protocol: NetFlow v5 and IPFIX count records sent before this
 * packet, NetFlow v9 counts export packets. `lost` is in that unit; `lostRecords` estimates records for
 * v9 from the mean records per packet.
 *
 * Record-counting exporters disagree on two details, so the tracker learns each stream's convention
 * instead of reporting false gaps: whether the number already includes the current message, and
 * whether options records count. RFC 7011 says neither and yes; softflowd 1.1.0's IPFIX says yes and no.
 */
export type SequenceUnit = 'records' | 'packets';

/** Forward jumps larger than this are treated as an exporter restart, not loss. */
const MAX_GAP = 2 ** 24;

/** [includes the current message, counts options records]; index 0 is RFC 7011's. */
const CONVENTIONS: ReadonlyArray<readonly [boolean, boolean]> = [
  [false, true],
  [true, true],
  [false, false],
  [true, false],
];

export class SequenceTracker {
  lost = 0;
  lostRecords = 0;
  gaps = 0;
  reordered = 0;
  resets = 0;
  private known = false;
  private lastSequence = 0;
  private lastAll = 0;
  private lastFlows = 0;
  private lastUptime = -1;
  private convention = 0;
  private packetsSeen = 0;
  private recordsSeen = 0;

  constructor(readonly unit: SequenceUnit) {}

  /**
   * Records one packet after decoding it. `records` counts its data records, options records
   * included (v5: flow records), or is -1 when some sets could not be decoded and the count is
   * unknown; `optionRecords` says how many of them were options records. `uptimeMs` is the header's
   * sysUpTime where there is one (a smaller value than last time means a restart).
   */
  observe(sequence: number, records: number, uptimeMs = -1, optionRecords = 0): void {
    this.packetsSeen++;
    if (records > 0) this.recordsSeen += records - optionRecords;
    const restarted = uptimeMs >= 0 && this.lastUptime >= 0 && uptimeMs < this.lastUptime;
    if (uptimeMs >= 0) this.lastUptime = uptimeMs;
    if (!this.known || restarted) {
      if (restarted) this.resets++;
      this.accept(sequence, records, optionRecords);
      return;
    }
    const expected = this.expected(this.convention, records, optionRecords);
    const delta = (sequence - expected) >>> 0;
    if (delta === 0) {
      this.accept(sequence, records, optionRecords);
      return;
    }
    if (this.unit === 'records' && records >= 0) {
      // Another convention explains this number: adopt it rather than report a gap.
      for (let c = 0; c < CONVENTIONS.length; c++) {
        if (c !== this.convention && this.expected(c, records, optionRecords) === sequence >>> 0) {
          this.convention = c;
          this.accept(sequence, records, optionRecords);
          return;
        }
      }
    }
    if (delta < 0x80000000) {
      if (delta > MAX_GAP) {
        this.resets++;
      } else {
        this.gaps++;
        this.lost += delta;
        this.lostRecords += this.unit === 'packets' ? Math.round(delta * this.meanRecordsPerPacket()) : delta;
      }
      this.accept(sequence, records, optionRecords);
      return;
    }
    const behind = 2 ** 32 - delta;
    if (behind > MAX_GAP) {
      this.resets++;
      this.accept(sequence, records, optionRecords);
      return;
    }
    // A late or duplicated packet: keep waiting for the expected number.
    this.reordered++;
  }

  private expected(convention: number, records: number, optionRecords: number): number {
    if (this.unit === 'packets') return (this.lastSequence + 1) >>> 0;
    const [current, options] = CONVENTIONS[convention]!;
    const step = current
      ? options
        ? Math.max(records, 0)
        : Math.max(records - optionRecords, 0)
      : options
        ? this.lastAll
        : this.lastFlows;
    return (this.lastSequence + step) >>> 0;
  }

  private accept(sequence: number, records: number, optionRecords: number): void {
    if (records < 0 && this.unit === 'records') {
      // The next packet cannot be checked; start again from it.
      this.known = false;
      return;
    }
    this.known = true;
    this.lastSequence = sequence >>> 0;
    this.lastAll = Math.max(records, 0);
    this.lastFlows = Math.max(records - optionRecords, 0);
  }

  private meanRecordsPerPacket(): number {
    return this.packetsSeen > 0 ? this.recordsSeen / this.packetsSeen : 0;
  }
}
