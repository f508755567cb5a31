/* scripts.c -- the Lua scripts the cluster runs in Redis (EVALSHA): each
 * changes a room's keys and publishes the change on the bus in one atomic
 * step, so the bus's order is the store's order. Bus messages are a type
 * letter and fields written as <length>:<bytes>. The snapshot names keys
 * it finds in a set: fine on a standalone Redis (tagarela shards rooms
 * itself; it does not use Redis Cluster). */
#include "cluster_int.h"

#define NS "local function ns(s) return #s .. ':' .. s end\n"

const char *const cluster_scripts[N_SCRIPTS] = {
    /* SCRIPT_SAY: KEYS stream, counter, rooms with a history; ARGV channel,
     * room, hex, ts, from, to, from_ident, to_ident, from_name, to_name,
     * content, max_len, deadline (unix ms: later, the sender has been told
     * it was refused). The id, the append and the publish in one step. */
    [SCRIPT_SAY] = NS
        "local t = redis.call('TIME')\n"
        "if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[13]) then\n"
        "  return redis.error_reply('EXPIRED the say came after its deadline')\n"
        "end\n"
        "local id = redis.call('INCR', KEYS[2])\n"
        "local f = {'ts', ARGV[4], 'f', ARGV[5], 't', ARGV[6], 'fi', ARGV[7], 'ti', ARGV[8],\n"
        "           'fn', ARGV[9], 'tn', ARGV[10], 'c', ARGV[11]}\n"
        "if tonumber(ARGV[12]) > 0 then\n"
        "  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[12], id .. '-0', unpack(f))\n"
        "else\n"
        "  redis.call('XADD', KEYS[1], id .. '-0', unpack(f))\n"
        "end\n"
        "redis.call('SADD', KEYS[3], ARGV[3])\n"
        "redis.call('PUBLISH', ARGV[1], 'S' .. ns(ARGV[2]) .. ns(tostring(id)) .. ns(ARGV[4]) ..\n"
        "  ns(ARGV[5]) .. ns(ARGV[6]) .. ns(ARGV[7]) .. ns(ARGV[8]) .. ns(ARGV[9]) .. ns(ARGV[10]) ..\n"
        "  ns(ARGV[11]))\n"
        "return id\n",
    /* SCRIPT_LOGIN: KEYS members, member info, rooms with members, join
     * sequence; ARGV channel, room, hex, uid, name, ident, node. */
    [SCRIPT_LOGIN] = NS
        "if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return 0 end\n"
        "local seq = redis.call('INCR', KEYS[4])\n"
        "redis.call('ZADD', KEYS[1], seq, ARGV[4])\n"
        "redis.call('HSET', KEYS[2], ARGV[4], ns(ARGV[5]) .. ns(ARGV[6]) .. ns(ARGV[7]))\n"
        "redis.call('SADD', KEYS[3], ARGV[3])\n"
        "redis.call('PUBLISH', ARGV[1], 'L' .. ns(ARGV[2]) .. ns(ARGV[4]) .. ns(ARGV[5]) ..\n"
        "  ns(ARGV[6]) .. ns(ARGV[7]))\n"
        "return 1\n",
    /* SCRIPT_LOGOUT: KEYS members, member info, rooms with members; ARGV
     * channel, room, hex, uid. Published only when the user was there. */
    [SCRIPT_LOGOUT] = NS
        "if redis.call('ZREM', KEYS[1], ARGV[4]) == 0 then return 0 end\n"
        "redis.call('HDEL', KEYS[2], ARGV[4])\n"
        "if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[3]) end\n"
        "redis.call('PUBLISH', ARGV[1], 'O' .. ns(ARGV[2]) .. ns(ARGV[4]))\n"
        "return 1\n",
    /* SCRIPT_SNAPSHOT: KEYS rooms with members. Every room's members in
     * join order: {hex, {uid, info, uid, info, ...}, ...}. */
    [SCRIPT_SNAPSHOT] =
        "local out = {}\n"
        "for _, hex in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
        "  local list = {}\n"
        "  for _, uid in ipairs(redis.call('ZRANGE', 'tg:{r' .. hex .. '}:m', 0, -1)) do\n"
        "    table.insert(list, uid)\n"
        "    table.insert(list, redis.call('HGET', 'tg:{r' .. hex .. '}:u', uid) or '')\n"
        "  end\n"
        "  table.insert(out, hex)\n"
        "  table.insert(out, list)\n"
        "end\n"
        "return out\n",
    /* SCRIPT_TRIM_AGE: KEYS stream; ARGV the oldest time kept (unix s). */
    [SCRIPT_TRIM_AGE] =
        "local cut = tonumber(ARGV[1])\n"
        "local start = '-'\n"
        "while true do\n"
        "  local e = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 100)\n"
        "  if #e == 0 then return 0 end\n"
        "  for _, ent in ipairs(e) do\n"
        "    if tonumber(ent[2][2]) >= cut then return redis.call('XTRIM', KEYS[1], 'MINID', ent[1]) end\n"
        "  end\n"
        "  if #e < 100 then return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0) end\n"
        "  start = '(' .. e[#e][1]\n"
        "end\n",
    /* SCRIPT_CLAIM_UID: KEYS the uid's key, the node's users; ARGV node,
     * uid, room hex. 1 when the uid is this node's now, 0 when taken. */
    [SCRIPT_CLAIM_UID] =
        "if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end\n"
        "redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])\n"
        "return 1\n",
    /* SCRIPT_IDENT_FIND: KEYS the token's key; ARGV the time to live (0:
     * none). The identity id (its keys' lives renewed), or 0. */
    [SCRIPT_IDENT_FIND] =
        "local id = redis.call('GET', KEYS[1])\n"
        "if not id then return 0 end\n"
        "if tonumber(ARGV[1]) > 0 then\n"
        "  redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
        "  redis.call('EXPIRE', 'tg:identk:' .. id, ARGV[1])\n"
        "end\n"
        "return tonumber(id)\n",
    /* SCRIPT_IDENT_ADD: KEYS the token's key, the id counter; ARGV the
     * token hash's hex, the time to live (0: none). The new id. */
    [SCRIPT_IDENT_ADD] =
        "local id = redis.call('INCR', KEYS[2])\n"
        "redis.call('SET', KEYS[1], id)\n"
        "redis.call('SET', 'tg:identk:' .. id, ARGV[1])\n"
        "if tonumber(ARGV[2]) > 0 then\n"
        "  redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
        "  redis.call('EXPIRE', 'tg:identk:' .. id, ARGV[2])\n"
        "end\n"
        "return id\n",
};
