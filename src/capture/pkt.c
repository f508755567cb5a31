/* pkt.c -- link layer, IPv4/IPv6 and TCP header decoding for the
 * capture command. Every length is checked against both what was captured
 * and what the headers claim, so a corrupt or cut packet is classified,
 * never read past. */
#include "pkt.h"

#include <pcap/dlt.h>
#include <string.h>

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_IPV6 0x86DD
#define LINKTYPE_RAW_IP 101     /* LINKTYPE_RAW in files; some libpcaps pass it on */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

bool cap_pkt_linktype_ok(int lt)
{
    switch (lt) {
    case DLT_EN10MB: case DLT_LINUX_SLL: case DLT_LINUX_SLL2: case DLT_NULL:
    case DLT_LOOP: case DLT_RAW: case LINKTYPE_RAW_IP: case DLT_IPV4: case DLT_IPV6:
        return true;
    default:
        return false;
    }
}

/* Maps an ethertype to an IP version (0: not IP). */
static int ethertype_ipver(uint16_t t)
{
    return t == ETHERTYPE_IPV4 ? 4 : t == ETHERTYPE_IPV6 ? 6 : 0;
}

/* BSD address families: AF_INET is 2 everywhere, AF_INET6 differs by OS
 * (Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, macOS 30). */
static int af_ipver(uint32_t af)
{
    if (af == 2) return 4;
    if (af == 10 || af == 24 || af == 28 || af == 30) return 6;
    return 0;
}

/* Finds the IP header. Returns the offset of the IP header, or -1 when the
 * frame is not IP (*ipver 0) or is too short (*ipver -1). */
static long link_skip(int lt, const uint8_t *p, uint32_t caplen, int *ipver)
{
    *ipver = -1;
    switch (lt) {
    case DLT_EN10MB: {
        uint32_t off = 12;
        for (;;) {
            if (caplen < off + 2) return -1;
            uint16_t t = rd16(p + off);
            if (t == 0x8100 || t == 0x88A8 || t == 0x9100) {
                off += 4;       /* VLAN tag: the real type follows */
                continue;
            }
            *ipver = ethertype_ipver(t);
            return off + 2;
        }
    }
    case DLT_LINUX_SLL:
        if (caplen < 16) return -1;
        *ipver = ethertype_ipver(rd16(p + 14));
        return 16;
    case DLT_LINUX_SLL2:
        if (caplen < 20) return -1;
        *ipver = ethertype_ipver(rd16(p));
        return 20;
    case DLT_NULL: {
        if (caplen < 4) return -1;
        /* Host byte order of the machine that captured: try both. */
        uint32_t le = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
        *ipver = af_ipver(le <= 0xFFFF ? le : rd32(p));
        return 4;
    }
    case DLT_LOOP:
        if (caplen < 4) return -1;
        *ipver = af_ipver(rd32(p));
        return 4;
    case DLT_RAW: case LINKTYPE_RAW_IP: case DLT_IPV4: case DLT_IPV6:
        if (caplen < 1) return -1;
        *ipver = p[0] >> 4;
        if (*ipver != 4 && *ipver != 6) *ipver = 0;
        return 0;
    default:
        return -1;
    }
}

/* The IP layer's result: where TCP starts, how long it is on the wire. */
typedef struct ip_info {
    uint32_t l4_off;        /* from the start of the IP header */
    uint32_t l4_wire;       /* TCP header + payload length on the wire */
} ip_info;

static cap_pkt_status ipv4(const uint8_t *p, uint32_t cap, uint32_t wire,
                           cap_pkt *out, ip_info *ii)
{
    if (cap < 20) return CAP_PKT_SHORT;
    if (p[0] >> 4 != 4) return CAP_PKT_BAD;
    uint32_t hl = (uint32_t)(p[0] & 15) * 4;
    uint32_t total = rd16(p + 2);
    if (total == 0) total = wire;   /* TCP segmentation offload: no length */
    if (hl < 20 || total < hl) return CAP_PKT_BAD;
    if (cap < hl) return CAP_PKT_SHORT;
    if (rd16(p + 6) & 0x3FFF) return p[9] == 6 ? CAP_PKT_FRAGMENT : CAP_PKT_NOT_TCP;
    if (p[9] != 6) return CAP_PKT_NOT_TCP;
    out->ipver = 4;
    memset(out->src, 0, 16);
    memset(out->dst, 0, 16);
    memcpy(out->src, p + 12, 4);
    memcpy(out->dst, p + 16, 4);
    ii->l4_off = hl;
    ii->l4_wire = total - hl;
    return CAP_PKT_OK;
}

static cap_pkt_status ipv6(const uint8_t *p, uint32_t cap, cap_pkt *out, ip_info *ii)
{
    if (cap < 40) return CAP_PKT_SHORT;
    if (p[0] >> 4 != 6) return CAP_PKT_BAD;
    uint32_t plen = rd16(p + 4);
    if (plen == 0) return CAP_PKT_BAD;      /* jumbograms: not for chat traffic */
    uint8_t nh = p[6];
    uint32_t off = 40, end = 40 + plen;
    for (;;) {
        if (nh == 6) break;
        uint32_t len;
        if (nh == 0 || nh == 43 || nh == 60 || nh == 51 || nh == 44) {
            if (cap < off + 8) return CAP_PKT_SHORT;
            if (nh == 44) {
                if (rd16(p + off + 2) & 0xFFF9) return CAP_PKT_FRAGMENT;
                len = 8;
            } else if (nh == 51) {
                len = ((uint32_t)p[off + 1] + 2) * 4;
            } else {
                len = ((uint32_t)p[off + 1] + 1) * 8;
            }
        } else {
            return CAP_PKT_NOT_TCP;
        }
        nh = p[off];
        off += len;
        if (off > end) return CAP_PKT_BAD;
    }
    out->ipver = 6;
    memcpy(out->src, p + 8, 16);
    memcpy(out->dst, p + 24, 16);
    ii->l4_off = off;
    ii->l4_wire = end - off;
    return CAP_PKT_OK;
}

/* p: the TCP header; cap: captured bytes from there; wire: its wire length. */
static cap_pkt_status tcp(const uint8_t *p, uint32_t cap, uint32_t wire, cap_pkt *out)
{
    /* Ports, sequence numbers and flags are in the first 14 bytes: with
     * those the packet belongs to a flow even when the snaplen cut the
     * rest of the header (then its payload counts as cut). */
    if (cap < 14) return CAP_PKT_SHORT;
    uint32_t hl = (uint32_t)(p[12] >> 4) * 4;
    if (hl < 20 || wire < hl) return CAP_PKT_BAD;
    out->sport = rd16(p);
    out->dport = rd16(p + 2);
    out->seq = rd32(p + 4);
    out->ack = rd32(p + 8);
    out->flags = p[13];
    out->wire_len = wire - hl;
    if (cap > wire) cap = wire;     /* link-layer padding is not payload */
    out->payload = p + (cap < hl ? cap : hl);
    out->payload_len = cap > hl ? cap - hl : 0;
    out->truncated = out->payload_len < out->wire_len;
    return CAP_PKT_OK;
}

cap_pkt_status cap_pkt_decode(int linktype, const uint8_t *p, uint32_t caplen,
                              uint32_t wirelen, cap_pkt *out)
{
    if (!cap_pkt_linktype_ok(linktype)) return CAP_PKT_LINKTYPE;
    if (wirelen < caplen) wirelen = caplen;     /* corrupt record: trust what we have */
    int ipver;
    long off = link_skip(linktype, p, caplen, &ipver);
    if (ipver < 0) return CAP_PKT_SHORT;
    if (ipver == 0) return CAP_PKT_NOT_TCP;
    const uint8_t *ip = p + off;
    uint32_t cap = caplen - (uint32_t)off, wire = wirelen - (uint32_t)off;
    ip_info ii;
    cap_pkt_status st = ipver == 4 ? ipv4(ip, cap, wire, out, &ii) : ipv6(ip, cap, out, &ii);
    if (st != CAP_PKT_OK) return st;
    if (cap < ii.l4_off) return CAP_PKT_SHORT;
    return tcp(ip + ii.l4_off, cap - ii.l4_off, ii.l4_wire, out);
}
