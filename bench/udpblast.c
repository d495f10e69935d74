// From the flowsentry workplace tools (shared/tools/udpblast.c), kept here so `npm run bench` works from a clone.
// udpblast: replay the UDP payloads of a pcap (Ethernet/Linux-cooked/raw, IPv4) to 127.0.0.1:PORT.
// usage: udpblast FILE.pcap PORT [PPS (0 = max)] [LOOPS]
// Prints: packets sent, seconds, packets/s. Loopback only by construction.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct { uint8_t *p; uint32_t n; } pl_t;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s FILE.pcap PORT [PPS] [LOOPS]\n", argv[0]); return 2; }
  FILE *f = fopen(argv[1], "rb"); if (!f) { perror("open"); return 2; }
  int port = atoi(argv[2]); double pps = argc > 3 ? atof(argv[3]) : 0; int loops = argc > 4 ? atoi(argv[4]) : 1;
  uint8_t gh[24]; if (fread(gh, 1, 24, f) != 24) return 2;
  uint32_t magic = *(uint32_t *)gh; int swap = magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1;
  uint32_t linktype = *(uint32_t *)(gh + 20); if (swap) linktype = __builtin_bswap32(linktype);
  size_t cap = 1 << 16, cnt = 0; pl_t *v = malloc(cap * sizeof *v);
  uint8_t rh[16], buf[262144];
  while (fread(rh, 1, 16, f) == 16) {
    uint32_t incl = *(uint32_t *)(rh + 8); if (swap) incl = __builtin_bswap32(incl);
    if (incl > sizeof buf || fread(buf, 1, incl, f) != incl) break;
    size_t off = linktype == 1 ? 14 : linktype == 113 ? 16 : linktype == 276 ? 20 : 0;
    if (linktype == 1 && incl > 14 && buf[12] == 0x81 && buf[13] == 0) off = 18;
    if (incl < off + 28 || (buf[off] >> 4) != 4 || buf[off + 9] != 17) continue;
    size_t ihl = (buf[off] & 15) * 4; size_t u = off + ihl; if (incl < u + 8) continue;
    uint32_t ulen = (buf[u + 4] << 8 | buf[u + 5]); if (ulen < 8 || u + ulen > incl) continue;
    if (cnt == cap) { cap *= 2; v = realloc(v, cap * sizeof *v); }
    v[cnt].n = ulen - 8; v[cnt].p = malloc(v[cnt].n); memcpy(v[cnt].p, buf + u + 8, v[cnt].n); cnt++;
  }
  fclose(f);
  int s = socket(AF_INET, SOCK_DGRAM, 0); int sb = 8 << 20; setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)}; a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, (void *)&a, sizeof a)) { perror("connect"); return 2; }
  enum { B = 32 }; struct mmsghdr mm[B]; struct iovec io[B];
  size_t sent = 0, total = cnt * (size_t)loops; double t0 = now();
  for (size_t i = 0; i < total;) {
    int k = 0;
    for (; k < B && i + k < total; k++) {
      pl_t *p = &v[(i + k) % cnt]; io[k].iov_base = p->p; io[k].iov_len = p->n;
      memset(&mm[k], 0, sizeof mm[k]); mm[k].msg_hdr.msg_iov = &io[k]; mm[k].msg_hdr.msg_iovlen = 1;
    }
    if (pps > 0) { double due = t0 + (double)(i + k) / pps; double d; while ((d = due - now()) > 0) { if (d > 0.0005) usleep((useconds_t)(d * 1e6 / 2)); } }
    int r = sendmmsg(s, mm, k, 0); if (r < 0) { usleep(100); continue; }
    sent += r; i += r;
  }
  double dt = now() - t0;
  printf("sent %zu packets (%zu distinct) in %.3f s = %.0f pkt/s\n", sent, cnt, dt, sent / dt);
  return 0;
}
