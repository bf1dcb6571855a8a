/*
 * What the kernel's interfaces for raw IP cost per byte, against ESP-in-UDP with GSO/GRO: one
 * sender and one receiver moving ESP-sized packets (1400 bytes of payload) across a veth pair,
 * no crypto, so only the kernel path differs. Driven by bench/raw-ip-paths.sh (namespaces).
 *
 *   raw-ip-paths tx MODE IFNAME DST_IP DST_MAC SECONDS
 *   raw-ip-paths rx MODE IFNAME SECONDS
 *
 * tx modes: raw     — socket(AF_INET, SOCK_RAW, IPPROTO_ESP) + sendmmsg, 64 per call (today's
 *                     raw ESP sender);
 *           packet  — AF_PACKET SOCK_RAW with PACKET_QDISC_BYPASS + sendmmsg of whole Ethernet
 *                     frames (no routing, netfilter, neighbour or qdisc per packet);
 *           ring    — AF_PACKET TX ring (TPACKET_V2, PACKET_QDISC_BYPASS), 64 frames per send;
 *           udp-gso — UDP with UDP_SEGMENT, 44 segments per send (ESP-in-UDP's sender).
 * rx modes: raw     — socket(AF_INET, SOCK_RAW, IPPROTO_ESP) + recvmmsg, 64 per call;
 *           packet  — AF_PACKET TPACKET_V3 RX ring with a BPF filter for protocol 50 (and a
 *                     raw ESP socket that takes nothing, so the stack sends no ICMP);
 *           udp-gro — UDP with UDP_GRO + recvmmsg of 64 KiB buffers (ESP-in-UDP's receiver).
 * The receiver prints "MODE bytes pkts seconds gbps kpps" for the time between its first and
 * last packet.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/udp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define PAYLOAD 1400
#define BATCH 64
#define GSO_SEGS 44
#define PORT 4500

static void die(const char *what) {
    perror(what);
    exit(1);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint16_t csum(const void *data, size_t len) {
    const uint16_t *p = data;
    uint32_t s = 0;
    for (; len > 1; len -= 2) s += *p++;
    if (len) s += *(const uint8_t *)p;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

/* ESP header (SPI 0x100, sequence) and filler: what the receiver sees is the size, not content. */
static void esp(uint8_t *b, uint32_t seq) {
    memset(b, 0xa5, PAYLOAD);
    uint32_t spi = htonl(0x100), s = htonl(seq);
    memcpy(b, &spi, 4);
    memcpy(b + 4, &s, 4);
}

static size_t frame(uint8_t *f, const uint8_t *smac, const uint8_t *dmac, struct in_addr src,
                    struct in_addr dst, uint32_t seq) {
    struct ether_header *eh = (void *)f;
    memcpy(eh->ether_dhost, dmac, 6);
    memcpy(eh->ether_shost, smac, 6);
    eh->ether_type = htons(ETHERTYPE_IP);
    struct iphdr *ip = (void *)(f + sizeof *eh);
    memset(ip, 0, sizeof *ip);
    ip->version = 4;
    ip->ihl = 5;
    ip->tot_len = htons(sizeof *ip + PAYLOAD);
    ip->id = htons((uint16_t)seq);
    ip->frag_off = htons(IP_DF);
    ip->ttl = 64;
    ip->protocol = IPPROTO_ESP;
    ip->saddr = src.s_addr;
    ip->daddr = dst.s_addr;
    ip->check = csum(ip, sizeof *ip);
    esp((uint8_t *)(ip + 1), seq);
    return sizeof *eh + sizeof *ip + PAYLOAD;
}

static int ifindex_mac(int fd, const char *ifname, uint8_t *mac, struct in_addr *addr) {
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
    if (addr) {
        if (ioctl(fd, SIOCGIFADDR, &ifr) < 0) die("SIOCGIFADDR");
        *addr = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr;
    }
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) die("SIOCGIFINDEX");
    return ifr.ifr_ifindex;
}

static void tx(const char *mode, const char *ifname, const char *dst_s, const char *dmac_s,
               double secs) {
    struct in_addr dst;
    uint8_t dmac[6], smac[6];
    if (inet_pton(AF_INET, dst_s, &dst) != 1) die("DST_IP");
    if (sscanf(dmac_s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1], &dmac[2], &dmac[3],
               &dmac[4], &dmac[5]) != 6) {
        fprintf(stderr, "DST_MAC: want aa:bb:cc:dd:ee:ff\n");
        exit(2);
    }
    static uint8_t bufs[BATCH][PAYLOAD + 64];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint32_t seq = 1;
    double end = now() + secs;
    if (!strcmp(mode, "raw") || !strcmp(mode, "udp-gso")) {
        int udp = !strcmp(mode, "udp-gso");
        int fd = udp ? socket(AF_INET, SOCK_DGRAM, 0) : socket(AF_INET, SOCK_RAW, IPPROTO_ESP);
        if (fd < 0) die("socket");
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = dst, .sin_port = htons(udp ? PORT : 0)};
        if (connect(fd, (void *)&sa, sizeof sa) < 0) die("connect");
        if (udp) {
            int seg = PAYLOAD;
            if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg) < 0) die("UDP_SEGMENT");
            static uint8_t big[PAYLOAD * GSO_SEGS];
            for (int i = 0; i < GSO_SEGS; i++) esp(big + i * PAYLOAD, seq++);
            while (now() < end)
                for (int k = 0; k < 64; k++)
                    if (send(fd, big, sizeof big, 0) < 0) die("send");
            return;
        }
        for (int i = 0; i < BATCH; i++) {
            esp(bufs[i], seq++);
            iov[i] = (struct iovec){bufs[i], PAYLOAD};
            msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        while (now() < end)
            for (int k = 0; k < 64; k++)
                if (sendmmsg(fd, msgs, BATCH, 0) < 0) die("sendmmsg");
        return;
    }
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) die("AF_PACKET socket");
    struct in_addr src;
    int ifindex = ifindex_mac(fd, ifname, smac, &src);
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) die("PACKET_QDISC_BYPASS");
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = ifindex};
    if (!strcmp(mode, "packet")) {
        if (bind(fd, (void *)&ll, sizeof ll) < 0) die("bind");
        for (int i = 0; i < BATCH; i++) {
            size_t n = frame(bufs[i], smac, dmac, src, dst, seq++);
            iov[i] = (struct iovec){bufs[i], n};
            msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        while (now() < end)
            for (int k = 0; k < 64; k++)
                if (sendmmsg(fd, msgs, BATCH, 0) < 0) die("sendmmsg");
        return;
    }
    if (strcmp(mode, "ring")) {
        fprintf(stderr, "tx MODE: raw, packet, ring or udp-gso\n");
        exit(2);
    }
    int v = TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) die("PACKET_VERSION");
    struct tpacket_req req = {.tp_block_size = 1 << 16, .tp_block_nr = 16, .tp_frame_size = 2048};
    req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) die("PACKET_TX_RING");
    if (bind(fd, (void *)&ll, sizeof ll) < 0) die("bind");
    size_t ring_len = (size_t)req.tp_block_size * req.tp_block_nr;
    uint8_t *ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) die("mmap");
    unsigned slot = 0;
    const size_t data_off = TPACKET2_HDRLEN - sizeof(struct sockaddr_ll);
    while (now() < end) {
        for (int k = 0; k < 64; k++) {
            for (int i = 0; i < BATCH; i++) {
                struct tpacket2_hdr *h = (void *)(ring + (size_t)slot * req.tp_frame_size);
                while (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE) {
                    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                    poll(&pfd, 1, 10);
                }
                h->tp_len = frame((uint8_t *)h + data_off, smac, dmac, src, dst, seq++);
                __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
                slot = (slot + 1) % req.tp_frame_nr;
            }
            if (send(fd, NULL, 0, 0) < 0) die("send (TX ring)");
        }
    }
}

static void report(const char *mode, uint64_t bytes, uint64_t pkts, double t0, double t1) {
    double s = t1 > t0 ? t1 - t0 : 0;
    printf("%s %llu %llu %.3f %.3f %.1f\n", mode, (unsigned long long)bytes, (unsigned long long)pkts,
           s, s > 0 ? bytes * 8 / s / 1e9 : 0, s > 0 ? pkts / s / 1e3 : 0);
}

static void rx(const char *mode, const char *ifname, double secs) {
    uint64_t bytes = 0, pkts = 0;
    double t0 = 0, t1 = 0, end = now() + secs;
    if (!strcmp(mode, "raw") || !strcmp(mode, "udp-gro")) {
        int udp = !strcmp(mode, "udp-gro");
        int fd = udp ? socket(AF_INET, SOCK_DGRAM, 0) : socket(AF_INET, SOCK_RAW, IPPROTO_ESP);
        if (fd < 0) die("socket");
        int sz = 8 << 20, one = 1;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(udp ? PORT : 0)};
        if (bind(fd, (void *)&sa, sizeof sa) < 0) die("bind");
        if (udp && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) < 0) die("UDP_GRO");
        /* recvmmsg's own timeout is only checked after a datagram arrives. */
        struct timeval rto = {0, 200000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto);
        size_t cap = udp ? 65536 : 2048;
        uint8_t *buf = malloc(cap * BATCH);
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        char cmsg[BATCH][64];
        while (now() < end) {
            for (int i = 0; i < BATCH; i++) {
                iov[i] = (struct iovec){buf + i * cap, cap};
                msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1,
                                                       .msg_control = cmsg[i], .msg_controllen = 64}};
            }
            int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
            if (n <= 0) continue;
            double t = now();
            if (!t0) t0 = t;
            t1 = t;
            for (int i = 0; i < n; i++) {
                size_t len = msgs[i].msg_len;
                bytes += udp ? len : len - sizeof(struct iphdr);
                uint16_t seg = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c;
                     c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
                    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) memcpy(&seg, CMSG_DATA(c), 2);
                pkts += seg ? (len + seg - 1) / seg : 1;
            }
        }
        report(mode, bytes, pkts, t0, t1);
        return;
    }
    if (strcmp(mode, "packet")) {
        fprintf(stderr, "rx MODE: raw, packet or udp-gro\n");
        exit(2);
    }
    /* A raw ESP socket that takes nothing: the stack delivers to it, so it sends no "protocol
     * unreachable" for what the ring already has. */
    int sink = socket(AF_INET, SOCK_RAW, IPPROTO_ESP);
    struct sock_filter none[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
    struct sock_fprog pnone = {1, none};
    if (sink < 0 || setsockopt(sink, SOL_SOCKET, SO_ATTACH_FILTER, &pnone, sizeof pnone) < 0) die("sink");
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (fd < 0) die("AF_PACKET socket");
    uint8_t mac[6];
    int ifindex = ifindex_mac(fd, ifname, mac, NULL);
    /* Ethernet frame: IP protocol at offset 23. */
    struct sock_filter esp_only[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ESP, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0x40000),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog pesp = {4, esp_only};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &pesp, sizeof pesp) < 0) die("filter");
    int v = TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) die("PACKET_VERSION");
    struct tpacket_req3 req = {.tp_block_size = 1 << 20, .tp_block_nr = 16, .tp_frame_size = 2048,
                               .tp_retire_blk_tov = 1};
    req.tp_frame_nr = req.tp_block_size / req.tp_frame_size * req.tp_block_nr;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) die("PACKET_RX_RING");
    uint8_t *ring = mmap(NULL, (size_t)req.tp_block_size * req.tp_block_nr, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_LOCKED, fd, 0);
    if (ring == MAP_FAILED) die("mmap");
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = ifindex};
    if (bind(fd, (void *)&ll, sizeof ll) < 0) die("bind");
    unsigned blk = 0;
    while (now() < end) {
        struct tpacket_block_desc *b = (void *)(ring + (size_t)blk * req.tp_block_size);
        if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLERR};
            poll(&pfd, 1, 200);
            continue;
        }
        double t = now();
        if (!t0) t0 = t;
        t1 = t;
        struct tpacket3_hdr *h = (void *)((uint8_t *)b + b->hdr.bh1.offset_to_first_pkt);
        for (unsigned i = 0; i < b->hdr.bh1.num_pkts; i++) {
            bytes += h->tp_len - sizeof(struct iphdr);
            pkts++;
            h = (void *)((uint8_t *)h + h->tp_next_offset);
        }
        __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        blk = (blk + 1) % req.tp_block_nr;
    }
    report(mode, bytes, pkts, t0, t1);
}

int main(int argc, char **argv) {
    if (argc == 7 && !strcmp(argv[1], "tx")) {
        tx(argv[2], argv[3], argv[4], argv[5], atof(argv[6]));
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "rx")) {
        rx(argv[2], argv[3], atof(argv[4]));
        return 0;
    }
    fprintf(stderr, "usage: raw-ip-paths tx MODE IFNAME DST_IP DST_MAC SECONDS | rx MODE IFNAME SECONDS\n");
    return 2;
}
