/* store_redis.c: the job store shared by several orfeasd nodes on one Redis
 * ("redis://[USER@]HOST:PORT[/DB]", AUTH from --store-password-file;
 * issue #15; docs/scaling.md).
 *
 * Keys (one Redis, one DB; Redis Cluster is not supported: the scripts
 * touch keys they are not handed):
 *
 *   orfeas:job:<id>    hash, one per job: `rec` (the od_job_rec as this
 *                      build lays it out), `base` (the record as inserted:
 *                      the store-owned fields come from it), and the
 *                      fields the scripts decide on: state, attempt, tries,
 *                      owner, ts (t_started), seq, hold, since, ob, ub,
 *                      entry (its stream entry while queued or running)
 *   orfeas:jobs        the dispatch queue: a Stream with one consumer group
 *                      `workers`; an entry is XACK'ed and XDEL'ed when its
 *                      job leaves the queue or ends, so XLEN - pending is
 *                      the cluster backlog (--queue-size bounds it)
 *   orfeas:all         zset of job ids by seq (count: --max-jobs; recover)
 *   orfeas:idle        zset of idle job ids by when they last changed
 *                      (the later of the change and of t_ended): the
 *                      order an evict takes them in
 *   orfeas:held        zset of QUEUED job ids without a stream entry, by
 *                      t_queued: held by the request that queued them
 *                      until its enqueue or give-back; one left there long
 *                      (the request died between) is enqueued again by
 *                      requeue_stranded
 *   orfeas:tombs, orfeas:tomb:<id>   tombstones, at most --max-jobs
 *   orfeas:stats       hash of counters kept by the scripts (by state,
 *                      jobs, bytes): stats is O(1)
 *   orfeas:seq, orfeas:tseq   counters
 *   orfeas:layout      the record layout of the nodes using this Redis: a
 *                      node of another build refuses to start
 *   orfeas:ev          the event bus (pub/sub channel): "<id> <ev> <json>"
 *   orfeas:rl:<addr>   a client's rate-limit bucket (expires when full)
 *   orfeas:lease       hash: each node's --store-lease (consumer -> ms),
 *                      written by its claims, read by the others' claims
 *   orfeas:seen        zset: each node of orfeas:lease by when it may be
 *                      forgotten (Redis' clock, ms: its last claim or lease
 *                      renewal + NODE_KEEP_LEASES of its leases)
 *
 * Every change is one Lua script (EVALSHA, EVAL when Redis lost its script
 * cache), so each call is atomic as store.h asks.
 *
 * Claims and leases. An idle worker runs the claim script: it first takes
 * one entry whose holder has not renewed it for the holder's lease, else
 * one new entry (XREADGROUP without BLOCK); then, only with nothing to take, it
 * blocks in XREADGROUP ... BLOCK (at most half a lease, so lapsed leases and a
 * closed queue are seen) and starts what that delivered, if it still holds it
 * (a node that stalled past the lease in between finds it taken and starts
 * nothing). Starting a job writes processing, attempt + 1, tries + 1 and the
 * owner. A job taken from a lapsed lease is counted (stats.reclaimed); past
 * max_attempts tries it is failed with a reason instead of run ("the node
 * running this job was lost N times"), and "look it up" is published for
 * its subscribers. The pending list is walked whole for lapsed claims.
 * Each node's lease is its own --store-lease, kept by every claim script
 * it runs in orfeas:lease (consumer -> ms): an entry is lapsed once idle
 * for its consumer's lease, not the claimer's, so a node started with a
 * shorter lease does not take over the jobs a node with a longer one
 * renews (every third of its lease), which would run each twice.
 * Nodes come and go (autoscaled, with generated or rotating --node-id):
 * a node silent for NODE_KEEP_LEASES of its own leases (no claim, no
 * renewal) and with no claim pending to it is forgotten by the next stats
 * read of any node (each node's janitor reads them every second): its
 * field of orfeas:lease, its orfeas:seen entry and its consumer in the
 * group go, in that one script. Its field only ever decides over claims
 * pending to it, and a node writes it (and its time) in the claim script
 * that takes work, before anything is pending to it, so a node coming back
 * under the same id is known again from its first claim, and a live node
 * (which claims at least every half lease while idle, and renews every
 * third of one while it runs a job) is never forgotten. A dead node whose
 * claim is still pending stays until the claim was taken over.
 * A heartbeat thread renews this process's claims every lease/3 (XCLAIM of
 * its own entry, min-idle 0, JUSTID: idle time reset, delivery count
 * kept), inside a script that first checks the job still has the claim's
 * attempt: a renewal of a superseded claim is refused (stats.fenced) and
 * the claim forgotten. A worker's end is a transition fenced by its
 * attempt, so a node that was cut off past its lease cannot overwrite the
 * newer attempt (OD_STORE_FENCED).
 *
 * Connections: hiredis 0.14's synchronous API, one context per calling
 * thread at a time from a pool (a context is not thread-safe), each with a
 * connect and a read/write timeout (OP_TIMEOUT_S; a blocking XREADGROUP
 * gets its block time on top), so a dead or stalled Redis is OD_STORE_DOWN
 * (503), never a hang. A context that failed is dropped; the next call
 * connects again.
 *
 * The event bus (store.h): od_store_publish queues the event (bounded,
 * PUBQ_MAX; full = dropped, the caller then hands it to its own hub); one
 * publisher thread sends the queue in order, pipelined; one listener
 * thread per process SUBSCRIBEs on a context of its own and calls the
 * listener's on_event per message and on_resync after each (re)connect.
 *
 * Shutdown: close_queue only stops this node taking work; the jobs waiting
 * in the stream stay there for the other nodes (each() is never called).
 * recover settles nothing: a dead node's running jobs are taken again by
 * lease, by whichever node is idle first. Redis' own durability decides
 * what survives a crash of Redis (appendonly yes, appendfsync always: every
 * acknowledged write; docs/scaling.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "store.h"

#define OP_TIMEOUT_S 2.0     /* connect and each reply */
#define POOL_MAX 64          /* idle contexts kept */
#define HELD_MAX 1024        /* claims this process renews (>= workers) */
#define DEFAULT_LEASE_S 10.0 /* od_store_opts.lease_s 0 */
#define LAYOUT_VERSION 1     /* bump when od_job_rec's meaning changes */
#define PUBQ_MAX 4096        /* events waiting for the publisher */
#define PUB_BATCH 256        /* events sent in one pipelined write */
#define BUS_CHANNEL "orfeas:ev"
/* A node silent this many of its own leases, with no claim pending to it,
 * is forgotten (orfeas:lease); at most NODE_FORGET_BATCH a stats read. */
#define NODE_KEEP_LEASES "10"
#define NODE_FORGET_BATCH "100"

/* The scripts return store.h's codes; the claim script adds these. */
_Static_assert(OD_STORE_NOT_FOUND == 1 && OD_STORE_CONFLICT == 2 &&
                   OD_STORE_FULL == 3 && OD_STORE_FENCED == 4 &&
                   OD_STORE_EMPTY == 5 && OD_STORE_GONE == 8,
               "the Lua scripts below use these numbers");
_Static_assert(OD_JOB_UPLOADED == 0 && OD_JOB_QUEUED == 1 &&
                   OD_JOB_PROCESSING == 2,
               "the Lua scripts below use these numbers");
#define CLAIM_FRESH 0
#define CLAIM_LAPSED 9  /* taken from a holder whose lease lapsed */
#define CLAIM_POISON 10 /* the same, past max_attempts: fail it */

/* ---- scripts ------------------------------------------------------------- */

#define LUA_COMMON                                                             \
  "local S,G='orfeas:jobs','workers'\n"                                        \
  "local function jk(id) return 'orfeas:job:'..id end\n"                       \
  "local function rd(k) return redis.call('HMGET',k,'rec','base','state',"     \
  "'attempt','tries','owner','ts','seq') end\n"                                \
  "local function grp() if redis.call('EXISTS',S)==0 then "                    \
  "redis.call('XGROUP','CREATE',S,G,'$','MKSTREAM') end end\n"                 \
  "local function unq(k) local e=redis.call('HGET',k,'entry') "                \
  "if e and e~='' then redis.call('XACK',S,G,e) redis.call('XDEL',S,e) "       \
  "redis.call('HSET',k,'entry','') end end\n"                                  \
  "local function rel(k,id) local e=redis.call('HGET',k,'entry') "             \
  "local p=e and e~='' and redis.call('XPENDING',S,G,e,e,1)[1] "               \
  "if p then redis.call('XCLAIM',S,G,p[2],0,e,'IDLE','1000000000000',"         \
  "'JUSTID') else unq(k) grp() "                                               \
  "redis.call('HSET',k,'entry',redis.call('XADD',S,'*','job',id)) end end\n"   \
  "local function cnt(f,d) redis.call('HINCRBY','orfeas:stats',f,d) end\n"     \
  "local function idle(id,st,sc) if st==1 or st==2 then "                      \
  "redis.call('ZREM','orfeas:idle',id) else "                                  \
  "redis.call('ZADD','orfeas:idle',sc,id) end end\n"                           \
  "local function last() for _,g in ipairs(redis.call('XINFO','GROUPS',S)) "   \
  "do local m={} for i=1,#g,2 do m[g[i]]=g[i+1] end "                          \
  "if m['name']==G then return m['last-delivered-id'] end end "                \
  "return '0-0' end\n"                                                         \
  "local function idlt(a,b) local am,as=a:match('(%d+)-(%d+)') "               \
  "local bm,bs=b:match('(%d+)-(%d+)') am,as,bm,bs=tonumber(am),tonumber(as),"  \
  "tonumber(bm),tonumber(bs) if am~=bm then return am<bm end "                 \
  "return as<bs end\n"                                                         \
  "local function now_ms() local t=redis.call('TIME') "                        \
  "return tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000) end\n"           \
  "local function seen(c,l) redis.call('ZADD','orfeas:seen',"                  \
  "now_ms()+" NODE_KEEP_LEASES "*tonumber(l),c) end\n"

/* ARGV: id rec base upload_bytes since max_jobs score */
static const char LUA_INSERT[] = LUA_COMMON
    "local k=jk(ARGV[1])\n"
    "if redis.call('EXISTS',k)==1 then return {2} end\n"
    "if redis.call('ZCARD','orfeas:all')>=tonumber(ARGV[6]) then return {3} "
    "end\n"
    "local seq=redis.call('INCR','orfeas:seq')\n"
    "redis.call('HSET',k,'rec',ARGV[2],'base',ARGV[3],'state',0,'attempt',0,"
    "'tries',0,'owner','','ts','0','seq',seq,'hold','0','since',ARGV[5],"
    "'ob',0,'ub',ARGV[4],'entry','')\n"
    "redis.call('ZADD','orfeas:all',seq,ARGV[1])\n"
    "idle(ARGV[1],0,ARGV[7])\n"
    "if redis.call('ZREM','orfeas:tombs',ARGV[1])==1 then "
    "redis.call('DEL','orfeas:tomb:'..ARGV[1]) end\n"
    "cnt('s0',1) cnt('jobs',1) cnt('ub',ARGV[4])\n"
    "return {0,seq}\n";

/* ARGV: id */
static const char LUA_GET[] = LUA_COMMON
    "local k=jk(ARGV[1])\n"
    "if redis.call('EXISTS',k)==1 then return {0,rd(k)} end\n"
    "local t=redis.call('HMGET','orfeas:tomb:'..ARGV[1],'reason','t')\n"
    "if t[1] then return {8,t} end\n"
    "return {1}\n";

/* ARGV: id from fence rec state tries t_started hold since output_bytes
 * score t_queued. PROCESSING -> QUEUED releases the claim (store.h): the job's
 * stream entry stays pending and is marked idle for ~30 years (XCLAIM
 * IDLE; a larger value would read as "now"), so the next claim of any node
 * finds it first among the lapsed ones (LUA_CLAIM) and starts it as a
 * queued job: a fresh claim, not a takeover. An entry gone meanwhile gets
 * a new one at the stream's end. The attempt is checked before the state:
 * a superseded run's end is refused as such (4, FENCED) also once the
 * newer attempt has ended, never as a busy job (2). */
static const char LUA_TRANSITION[] = LUA_COMMON
    "local k=jk(ARGV[1])\n"
    "if redis.call('EXISTS',k)==0 then return {1} end\n"
    "local cur=rd(k)\n"
    "local st=tonumber(cur[3])\n"
    "local f=tonumber(ARGV[3])\n"
    "if f>0 and tonumber(cur[4])~=f then return {4,cur} end\n"
    "if bit.band(tonumber(ARGV[2]),bit.lshift(1,st))==0 then return {2,cur} "
    "end\n"
    "local ns=tonumber(ARGV[5])\n"
    "local ob=tonumber(redis.call('HGET',k,'ob'))\n"
    "redis.call('HSET',k,'rec',ARGV[4],'state',ns,'tries',ARGV[6],'ts',"
    "ARGV[7],'hold',ARGV[8],'since',ARGV[9],'ob',ARGV[10])\n"
    "if st==2 and ns==1 then rel(k,ARGV[1])\n"
    "elseif ns~=2 and not (st==1 and ns==1) then unq(k) end\n"
    "if ns==1 and st~=1 and st~=2 then "
    "redis.call('ZADD','orfeas:held',ARGV[12],ARGV[1])\n"
    "elseif ns~=1 then redis.call('ZREM','orfeas:held',ARGV[1]) end\n"
    "if not (st==ns and (st==1 or st==2)) then idle(ARGV[1],ns,ARGV[11]) end\n"
    "cnt('s'..st,-1) cnt('s'..ns,1) cnt('ob',tonumber(ARGV[10])-ob)\n"
    "return {0,cur}\n";

/* ARGV: id queue_size */
static const char LUA_ENQUEUE[] = LUA_COMMON
    "local k=jk(ARGV[1])\n"
    "if redis.call('EXISTS',k)==0 then return {1} end\n"
    "local h=redis.call('HMGET',k,'state','entry')\n"
    "if tonumber(h[1])~=1 or (h[2] and h[2]~='') then return {2} end\n"
    "grp()\n"
    "local d=redis.call('XLEN',S)-redis.call('XPENDING',S,G)[1]\n"
    "if d>=tonumber(ARGV[2]) then return {3} end\n"
    "redis.call('HSET',k,'entry',redis.call('XADD',S,'*','job',ARGV[1]))\n"
    "redis.call('ZREM','orfeas:held',ARGV[1])\n"
    "return {0,d}\n";

/* ARGV: before max. The held jobs queued before `before` that are still
 * QUEUED without an entry get one (past --queue-size: they were let in);
 * every id looked at leaves the set. Returns {0, how many}. */
static const char LUA_REQUEUE[] = LUA_COMMON
    "local n=0\n"
    "for _,id in ipairs(redis.call('ZRANGEBYSCORE','orfeas:held','-inf',"
    "'('..ARGV[1],'LIMIT',0,tonumber(ARGV[2]))) do\n"
    " local k=jk(id)\n"
    " local h=redis.call('HMGET',k,'state','entry')\n"
    " if tonumber(h[1])==1 and (not h[2] or h[2]=='') then grp()\n"
    "  redis.call('HSET',k,'entry',redis.call('XADD',S,'*','job',id)) n=n+1 "
    "end\n"
    " redis.call('ZREM','orfeas:held',id)\n"
    "end\n"
    "return {0,n}\n";

/* ARGV: id */
static const char LUA_POSITION[] = LUA_COMMON
    "local k=jk(ARGV[1])\n"
    "if redis.call('EXISTS',k)==0 then return {1} end\n"
    "local h=redis.call('HMGET',k,'state','entry')\n"
    "if tonumber(h[1])~=1 or not h[2] or h[2]=='' then return {0,-1} end\n"
    "grp()\n"
    "local l=last()\n"
    "if not idlt(l,h[2]) then return {0,-1} end\n"
    "return {0,#redis.call('XRANGE',S,'('..l,'('..h[2])}\n";

/* ARGV: consumer owner now max_attempts lease_ms entry job
 * entry "": take a lapsed claim or a new entry; else start that entry
 * (just delivered by a blocking XREADGROUP), only while this consumer still
 * holds it and no other worker runs its job: a node that stalled past the
 * lease between the delivery and this script had the entry taken by
 * another node's XAUTOCLAIM (or another worker of its own), which runs the
 * job now; starting it again would fence that run as a lapsed one. Then
 * it is left as it is (no XACK: the entry is the new holder's). Returns
 * {code, rec, entry} with code CLAIM_*, or {5} (nothing). */
static const char LUA_CLAIM[] = LUA_COMMON
    "local function start(e,id)\n"
    " local k=jk(id)\n"
    " local h=redis.call('HMGET',k,'state','entry','tries')\n"
    " local st=tonumber(h[1])\n"
    " if not st or h[2]~=e or (st~=1 and st~=2) then\n"
    "  redis.call('XACK',S,G,e) redis.call('XDEL',S,e) return nil end\n"
    " local code=0\n"
    " if st==2 then code=9 if tonumber(h[3])>=tonumber(ARGV[4]) then code=10 "
    "end end\n"
    " redis.call('HINCRBY',k,'attempt',1) redis.call('HINCRBY',k,'tries',1)\n"
    " redis.call('HSET',k,'owner',ARGV[2],'ts',ARGV[3],'state',2)\n"
    " if st==1 then cnt('s1',-1) cnt('s2',1) end\n"
    " return {code,rd(k),e}\n"
    "end\n"
    "grp()\n"
    "if ARGV[6]~='' then\n"
    " if #redis.call('XPENDING',S,G,ARGV[6],ARGV[6],1,ARGV[1])==0 then "
    "return {5} end\n"
    " local h=redis.call('HMGET',jk(ARGV[7]),'state','owner')\n"
    " if tonumber(h[1])==2 and h[2]~=ARGV[2] then return {5} end\n"
    " return start(ARGV[6],ARGV[7]) or {5}\n"
    "end\n"
    /* This node's lease, for the others' claims. Then the whole pending
     * list (running jobs: bounded by the workers), idle at least 200 ms
     * (the shortest lease): an entry idle for its holder's lease (this
     * node's when its holder never said) is taken (XCLAIM; a deleted
     * entry returns nothing and leaves the pending list), and the
     * holder's lease goes back with the job for the log. */
    "local L='orfeas:lease'\n"
    "redis.call('HSET',L,ARGV[1],ARGV[5]) seen(ARGV[1],ARGV[5])\n"
    "local from='-'\n"
    "repeat\n"
    " local p=redis.call('XPENDING',S,G,'IDLE',200,from,'+',100)\n"
    " for _,x in ipairs(p) do\n"
    "  local l=tonumber(redis.call('HGET',L,x[2])) or tonumber(ARGV[5])\n"
    "  if tonumber(x[3])>=l then\n"
    "   for _,y in ipairs(redis.call('XCLAIM',S,G,ARGV[1],l,x[1])) do\n"
    "    if y and y[2] then local s=start(y[1],y[2][2]) "
    "if s then s[4]=l return s end end\n"
    "   end\n"
    "  end\n"
    "  from='('..x[1]\n"
    " end\n"
    "until #p<100\n"
    "local n=redis.call('XREADGROUP','GROUP',G,ARGV[1],'COUNT',1,'STREAMS',"
    "S,'>')\n"
    "if n then for _,x in ipairs(n[1][2]) do if x[2] then "
    "local s=start(x[1],x[2][2]) if s then return s end end end end\n"
    "return {5}\n";

/* ARGV: id attempt consumer entry lease_ms. 0 renewed (and the node seen
 * now), 4 another attempt holds the job (fenced), 1 it ended or went
 * (nothing to renew). */
static const char LUA_RENEW[] =
    LUA_COMMON "local h=redis.call('HMGET',jk(ARGV[1]),'state','attempt')\n"
               "if not h[1] then return 1 end\n"
               "if tonumber(h[2])~=tonumber(ARGV[2]) then return 4 end\n"
               "if tonumber(h[1])~=2 then return 1 end\n"
               "redis.call('XCLAIM',S,G,ARGV[3],0,ARGV[4],'JUSTID')\n"
               "seen(ARGV[3],ARGV[5])\n"
               "return 0\n";

/* ARGV: id ("" = the oldest idle) idle_before reason now max_jobs */
static const char LUA_EVICT[] = LUA_COMMON
    "local id=nil\n"
    "if ARGV[1]~='' then\n"
    " local k=jk(ARGV[1])\n"
    " if redis.call('EXISTS',k)==0 then return {1} end\n"
    " local s=tonumber(redis.call('HGET',k,'state'))\n"
    " if s==1 or s==2 then return {2} end\n"
    " id=ARGV[1]\n"
    "else\n"
    " local ib,now,off,stop=tonumber(ARGV[2]),tonumber(ARGV[4]),0,false\n"
    " while not stop do\n"
    "  local ids=redis.call('ZRANGE','orfeas:idle',off,off+99)\n"
    "  if #ids==0 then break end\n"
    "  for _,x in ipairs(ids) do\n"
    "   local h=redis.call('HMGET',jk(x),'hold','since')\n"
    "   if tonumber(h[1])<=now then\n"
    "    if ib<=0 or tonumber(h[2])<ib then id=x end\n"
    "    stop=true break end\n"
    "  end\n"
    "  off=off+100\n"
    " end\n"
    " if not id then return {5} end\n"
    "end\n"
    "local k=jk(id)\n"
    "local cur=rd(k)\n"
    "local h=redis.call('HMGET',k,'state','ub','ob')\n"
    "redis.call('DEL',k) redis.call('ZREM','orfeas:all',id) "
    "redis.call('ZREM','orfeas:idle',id)\n"
    "cnt('s'..h[1],-1) cnt('jobs',-1) cnt('ub',0-tonumber(h[2])) "
    "cnt('ob',0-tonumber(h[3]))\n"
    "if ARGV[3]~='' then\n"
    " redis.call('HSET','orfeas:tomb:'..id,'reason',ARGV[3],'t',ARGV[4])\n"
    " redis.call('ZADD','orfeas:tombs',redis.call('INCR','orfeas:tseq'),id)\n"
    " while redis.call('ZCARD','orfeas:tombs')>tonumber(ARGV[5]) do\n"
    "  local o=redis.call('ZPOPMIN','orfeas:tombs')\n"
    "  redis.call('DEL','orfeas:tomb:'..o[1]) end\n"
    "end\n"
    "return {0,cur}\n";

/* ARGV: key rate burst. Returns the whole seconds to wait (0: taken). */
static const char LUA_RATE[] =
    "local k='orfeas:rl:'..ARGV[1]\n"
    "local rate,burst=tonumber(ARGV[2]),tonumber(ARGV[3])\n"
    "local t=redis.call('TIME')\n"
    "local now=tonumber(t[1])+tonumber(t[2])/1e6\n"
    "local h=redis.call('HMGET',k,'tok','last')\n"
    "local tok,last=tonumber(h[1]) or burst,tonumber(h[2]) or now\n"
    "tok=math.min(burst,tok+math.max(0,now-last)*rate)\n"
    "local wait=0\n"
    "if tok>=1 then tok=tok-1 else wait=math.max(1,math.ceil((1-tok)/rate)) "
    "end\n"
    "redis.call('HSET',k,'tok',string.format('%.6f',tok),'last',"
    "string.format('%.6f',now))\n"
    "redis.call('PEXPIRE',k,math.ceil((burst/rate+1)*1000))\n"
    "return wait\n";

/* Also forgets the nodes long gone (the top): the nodes of orfeas:lease
 * whose time in orfeas:seen has passed, at most NODE_FORGET_BATCH, each
 * unless a claim is pending to it (then it is looked at again a lease
 * later). Fields a build without orfeas:seen wrote get their time first,
 * counted from now. Returns {counters, depth, age, tombstones, nodes}. */
static const char LUA_STATS[] = LUA_COMMON
    "grp()\n"
    "local L,W='orfeas:lease','orfeas:seen'\n"
    "local now=now_ms()\n"
    "local function lease(c) return tonumber(redis.call('HGET',L,c)) or 0 end\n"
    "if redis.call('HLEN',L)>redis.call('ZCARD',W) then\n"
    " for _,c in ipairs(redis.call('HKEYS',L)) do\n"
    "  if not redis.call('ZSCORE',W,c) then\n"
    "   redis.call('ZADD',W,now+" NODE_KEEP_LEASES "*lease(c),c) end\n"
    " end\n"
    "end\n"
    "for _,c in "
    "ipairs(redis.call('ZRANGEBYSCORE',W,'-inf',now,'LIMIT',"
    "0," NODE_FORGET_BATCH ")) do\n"
    " if #redis.call('XPENDING',S,G,'-','+',1,c)==0 then\n"
    "  redis.call('HDEL',L,c) redis.call('ZREM',W,c)\n"
    "  redis.call('XGROUP','DELCONSUMER',S,G,c)\n"
    " else redis.call('ZADD',W,now+lease(c),c) end\n"
    "end\n"
    "local s=redis.call('HMGET','orfeas:stats','s0','s1','s2','s3','s4',"
    "'jobs','ub','ob')\n"
    "local d=redis.call('XLEN',S)-redis.call('XPENDING',S,G)[1]\n"
    "local age='0'\n"
    "local x=redis.call('XRANGE',S,'('..last(),'+','COUNT',1)\n"
    "if #x>0 then local t=redis.call('TIME') "
    "age=tostring(tonumber(t[1])*1000+tonumber(t[2])/1000-"
    "tonumber(x[1][1]:match('^(%d+)'))) end\n"
    "return {s,d,age,redis.call('ZCARD','orfeas:tombs'),redis.call('HLEN',L)}"
    "\n";

typedef struct {
  const char *body;
  char sha[41];
} script;

enum {
  S_INSERT,
  S_GET,
  S_TRANSITION,
  S_ENQUEUE,
  S_POSITION,
  S_CLAIM,
  S_RENEW,
  S_EVICT,
  S_STATS,
  S_RATE,
  S_REQUEUE,
  S_COUNT
};

/* ---- the backend's state ------------------------------------------------- */

typedef struct {
  char id[37];
  int attempt;
  char entry[48];
} held;

typedef struct {
  char host[256];
  int port, db;
  char user[128]; /* AUTH's user (redis://USER@...), "" for the default */
  /* AUTH's password is this file's first line (--store-password-file),
   * read at each new connection, so a password rotated in Redis and in
   * the file is taken without a restart; "" for none. */
  char pass_file[4096];
  char url[320];
  int queue_size, max_jobs, max_attempts;
  double lease_s;
  char node[64];     /* od_store_opts.node_id, "" when none */
  char consumer[96]; /* this process in the consumer group */
  script sc[S_COUNT];

  pthread_mutex_t pool_mu;
  redisContext *pool[POOL_MAX];
  int npool;

  _Atomic int closed;
  _Atomic int down_logged; /* ctx_get: an outage was logged */
  _Atomic int64_t reclaimed, fenced;

  /* The claims the heartbeat renews. */
  pthread_mutex_t held_mu;
  pthread_cond_t hb_cv;
  held held[HELD_MAX];
  int nheld;
  int hb_stop, hb_started;
  pthread_t hb;

  /* The event bus: a queue the publisher thread empties, and the
   * listener thread (bus_mu guards all but the threads' own state). */
  pthread_mutex_t bus_mu;
  pthread_cond_t bus_cv;
  char *pubq[PUBQ_MAX]; /* owned: "<id> <ev> <json>" */
  int pub_head, pub_n;
  int bus_stop, pub_started, sub_started;
  pthread_t pub_th, sub_th;
  od_store_listener lis;
  int sub_fd; /* the listener's socket, -1 when none */
} rds;

static struct timeval tv_of(double s) {
  struct timeval tv = {(time_t)s, (suseconds_t)((s - floor(s)) * 1e6)};
  return tv;
}

/* The first line of path into out (a password): 0, or -1 with err. */
static int read_secret(const char *path, char *out, size_t size, char *err,
                       size_t err_len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, err_len, "--store-password-file %.200s: %s", path,
             strerror(errno));
    return -1;
  }
  ssize_t n = read(fd, out, size - 1);
  int e = errno;
  close(fd);
  if (n < 0) {
    snprintf(err, err_len, "--store-password-file %.200s: %s", path,
             strerror(e));
    return -1;
  }
  out[n] = '\0';
  out[strcspn(out, "\r\n")] = '\0';
  if (out[0] == '\0') {
    snprintf(err, err_len,
             "--store-password-file %.200s: its first line is empty (the "
             "password goes there)",
             path);
    return -1;
  }
  if ((size_t)n == size - 1 && strlen(out) == size - 1) {
    snprintf(err, err_len,
             "--store-password-file %.200s: the password is longer than %zu "
             "bytes",
             path, size - 2);
    return -1;
  }
  return 0;
}

/* A sentence for Redis' error `said` to the command `what`: the access
 * refusals (a wrong password, none given, an ACL user without the
 * rights) say what to do. */
static void explain(const rds *d, const char *what, const char *said, char *err,
                    size_t err_len) {
  if (strncmp(said, "WRONGPASS", 9) == 0 ||
      strstr(said, "invalid password") != NULL)
    snprintf(err, err_len,
             "Redis at %s:%d refused the password of "
             "--store-password-file%s%s (%s)",
             d->host, d->port, d->user[0] ? " for user " : "", d->user, said);
  else if (strncmp(said, "NOAUTH", 6) == 0)
    snprintf(err, err_len,
             "Redis at %s:%d requires a password: give it in a file with "
             "--store-password-file (%s)",
             d->host, d->port, said);
  else if (strncmp(said, "NOPERM", 6) == 0)
    snprintf(err, err_len,
             "Redis at %s:%d: %s: %s (the ACL user needs the orfeas:* keys "
             "and channel and the commands of ORFEAS' scripts: "
             "docs/scaling.md)",
             d->host, d->port, what, said);
  else
    snprintf(err, err_len, "Redis at %s:%d: %s failed: %s", d->host, d->port,
             what, said);
}

/* One command of a new connection's set-up (AUTH, SELECT): 0, or -1 with
 * err (when given) saying what Redis answered. */
static int setup_cmd(rds *d, redisContext *c, redisReply *r, const char *what,
                     char *err, size_t err_len) {
  int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
  if (!ok && err != NULL)
    explain(d, what,
            r == NULL                      ? c->errstr
            : r->type == REDIS_REPLY_ERROR ? r->str
                                           : "an unexpected reply",
            err, err_len);
  if (r)
    freeReplyObject(r);
  return ok ? 0 : -1;
}

/* A new connection, authenticated (AUTH, when a password was given) and on
 * the URL's DB; NULL when Redis cannot be reached or refuses it, with err
 * (when given) saying why. */
static redisContext *ctx_connect(rds *d, char *err, size_t err_len) {
  redisContext *c =
      redisConnectWithTimeout(d->host, d->port, tv_of(OP_TIMEOUT_S));
  if (c == NULL || c->err) {
    if (err != NULL)
      snprintf(err, err_len,
               "cannot connect to Redis at %s:%d: %s (is redis-server "
               "running and reachable?)",
               d->host, d->port, c ? c->errstr : "out of memory");
    if (c)
      redisFree(c);
    return NULL;
  }
  redisSetTimeout(c, tv_of(OP_TIMEOUT_S));
  int rc = 0;
  char pass[512], ferr[384];
  if (d->pass_file[0] &&
      read_secret(d->pass_file, pass, sizeof pass, ferr, sizeof ferr) != 0) {
    if (err != NULL)
      snprintf(err, err_len, "%s", ferr);
    rc = -1;
  } else if (d->pass_file[0] && d->user[0]) {
    rc = setup_cmd(d, c, redisCommand(c, "AUTH %s %s", d->user, pass), "AUTH",
                   err, err_len);
  } else if (d->pass_file[0]) {
    rc =
        setup_cmd(d, c, redisCommand(c, "AUTH %s", pass), "AUTH", err, err_len);
  }
  explicit_bzero(pass, sizeof pass);
  if (rc == 0 && d->db != 0)
    rc = setup_cmd(d, c, redisCommand(c, "SELECT %d", d->db), "SELECT", err,
                   err_len);
  if (rc != 0) {
    redisFree(c);
    return NULL;
  }
  return c;
}

/* A context from the pool, or a new connection; NULL when Redis cannot be
 * reached or refuses the connection (DOWN). The first failure of an outage
 * is logged with its reason (unreachable, a password Redis no longer
 * takes...), and the first connection after it: the pager's OrfeasStoreDown
 * then has its why in the log, once. */
static redisContext *ctx_get(rds *d) {
  pthread_mutex_lock(&d->pool_mu);
  redisContext *c = d->npool > 0 ? d->pool[--d->npool] : NULL;
  pthread_mutex_unlock(&d->pool_mu);
  if (c != NULL)
    return c;
  char why[384];
  c = ctx_connect(d, why, sizeof why);
  if (c == NULL && !atomic_exchange(&d->down_logged, 1))
    od_log("job store: %s; the store is down until Redis answers again "
           "(/ready 503)",
           why);
  else if (c != NULL && atomic_exchange(&d->down_logged, 0))
    od_log("job store: Redis at %s:%d answers again", d->host, d->port);
  return c;
}

/* Back to the pool; a context that failed (ok 0 or c->err) is dropped.
 * One whose connection the server closed (Redis restarted, the connection
 * was killed) drops the pooled ones too: they are most likely dead as well, and
 * each would fail one more request. The command is not retried: it may
 * have run before the connection went (a script is not always idempotent),
 * so its caller answers 503 and its client retries. */
static void ctx_put(rds *d, redisContext *c, int ok) {
  if (c == NULL)
    return;
  if (!ok || c->err) {
    /* The server closed it (EOF) or reset it; not a timeout, which a
     * slow Redis gives every connection and a flush would only multiply. */
    int lost = c->err == REDIS_ERR_EOF ||
               (c->err == REDIS_ERR_IO && (strstr(c->errstr, "reset") != NULL ||
                                           strstr(c->errstr, "pipe") != NULL));
    redisFree(c);
    if (lost) {
      pthread_mutex_lock(&d->pool_mu);
      while (d->npool > 0)
        redisFree(d->pool[--d->npool]);
      pthread_mutex_unlock(&d->pool_mu);
    }
    return;
  }
  pthread_mutex_lock(&d->pool_mu);
  if (d->npool < POOL_MAX) {
    d->pool[d->npool++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&d->pool_mu);
  if (c)
    redisFree(c);
}

/* Runs script k with n arguments (binary-safe); NULL on a connection
 * failure or a Redis error (logged once per reason by the caller's rc). */
static redisReply *eval(rds *d, redisContext *c, int k, int n,
                        const char **argv, const size_t *len) {
  const char *av[16];
  size_t al[16];
  if (n > 12)
    return NULL;
  av[0] = "EVALSHA";
  al[0] = 7;
  av[1] = d->sc[k].sha;
  al[1] = 40;
  av[2] = "0";
  al[2] = 1;
  for (int i = 0; i < n; i++) {
    av[3 + i] = argv[i];
    al[3 + i] = len ? len[i] : strlen(argv[i]);
  }
  redisReply *r = redisCommandArgv(c, n + 3, av, al);
  if (r != NULL && r->type == REDIS_REPLY_ERROR &&
      strncmp(r->str, "NOSCRIPT", 8) == 0) {
    freeReplyObject(r);
    av[0] = "EVAL";
    al[0] = 4;
    av[1] = d->sc[k].body;
    al[1] = strlen(d->sc[k].body);
    r = redisCommandArgv(c, n + 3, av, al);
  }
  if (r != NULL && r->type == REDIS_REPLY_ERROR) {
    od_logl(OD_LOG_ERROR, "redis store: %s", r->str);
    freeReplyObject(r);
    return NULL;
  }
  return r;
}

/* Calls script k on a pooled context: the reply, or NULL (DOWN). */
static redisReply *call(rds *d, int k, int n, const char **argv,
                        const size_t *len) {
  redisContext *c = ctx_get(d);
  if (c == NULL)
    return NULL;
  redisReply *r = eval(d, c, k, n, argv, len);
  ctx_put(d, c, r != NULL);
  return r;
}

static long long int_of(const redisReply *r);
static int code_of(const redisReply *r);

/* Calls script k, which answers {code} or {0, number}: the code as an rc,
 * the number in *num on OK. */
static od_store_rc call_num(rds *d, int k, int n, const char **argv,
                            const size_t *len, long long *num) {
  redisReply *x = call(d, k, n, argv, len);
  if (x == NULL)
    return OD_STORE_DOWN;
  od_store_rc rc = (od_store_rc)code_of(x);
  if (rc == OD_STORE_OK)
    *num = x->elements > 1 ? int_of(x->element[1]) : 0;
  freeReplyObject(x);
  return rc;
}

static long long int_of(const redisReply *r) {
  if (r == NULL)
    return 0;
  if (r->type == REDIS_REPLY_INTEGER)
    return r->integer;
  if (r->type == REDIS_REPLY_STRING)
    return strtoll(r->str, NULL, 10);
  return 0;
}

static double dbl_of(const redisReply *r) {
  return r != NULL && r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL)
                                                    : (double)int_of(r);
}

/* The code a script answered (its first element). */
static int code_of(const redisReply *r) {
  return r->type == REDIS_REPLY_ARRAY && r->elements > 0
             ? (int)int_of(r->element[0])
             : (int)int_of(r);
}

/* A record from rd()'s HMGET (rec base state attempt tries owner ts seq);
 * -1 when it does not hold one of this build's records. */
static int rec_of(const redisReply *a, od_job_rec *out) {
  if (a == NULL || a->type != REDIS_REPLY_ARRAY || a->elements != 8)
    return -1;
  const redisReply *rec = a->element[0], *base = a->element[1];
  if (rec->type != REDIS_REPLY_STRING || rec->len != sizeof *out ||
      base->type != REDIS_REPLY_STRING || base->len != sizeof *out)
    return -1;
  od_job_rec b;
  memcpy(out, rec->str, sizeof *out);
  memcpy(&b, base->str, sizeof b);
  /* Store-owned: as inserted, and as the scripts keep them. */
  memcpy(out->id, b.id, sizeof out->id);
  memcpy(out->ext, b.ext, sizeof out->ext);
  memcpy(out->image_sha256, b.image_sha256, sizeof out->image_sha256);
  out->upload_bytes = b.upload_bytes;
  out->t_created = b.t_created;
  out->state = (od_job_state)int_of(a->element[2]);
  out->attempt = (int)int_of(a->element[3]);
  out->tries = (int)int_of(a->element[4]);
  const redisReply *ow = a->element[5];
  snprintf(out->owner, sizeof out->owner, "%.*s",
           ow->type == REDIS_REPLY_STRING ? (int)ow->len : 0,
           ow->type == REDIS_REPLY_STRING ? ow->str : "");
  out->t_started = dbl_of(a->element[6]);
  out->seq = (uint64_t)int_of(a->element[7]);
  /* The request names its job (as sqlite loads it). */
  snprintf(out->req.job_id, sizeof out->req.job_id, "%s", out->id);
  return 0;
}

/* ---- open and close ------------------------------------------------------ */

static void sha_hex(const char *body, char out[41]) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)body, strlen(body), md);
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void *heartbeat(void *arg);
static void *publisher(void *arg);
static void rd_close(void *be);

/* "//[USER@]HOST:PORT[/DB]" into d; -1 with err filled. A password in the
 * URL is refused: the URL shows in ps, in the environment and in messages;
 * it goes in a file (--store-password-file). */
static int parse_url(rds *d, const char *rest, char *err, size_t err_len) {
  const char *p = rest;
  if (strncmp(p, "//", 2) != 0)
    goto bad;
  p += 2;
  const char *at = strrchr(p, '@');
  if (at != NULL) {
    if (memchr(p, ':', (size_t)(at - p)) != NULL) {
      snprintf(err, err_len,
               "a password in the URL would show in ps, the environment and "
               "the logs: put it alone in a file (mode 600) and give "
               "--store-password-file FILE; redis://USER@HOST:PORT names "
               "an ACL user");
      return -1;
    }
    if (at == p || (size_t)(at - p) >= sizeof d->user)
      goto bad;
    memcpy(d->user, p, (size_t)(at - p));
    d->user[at - p] = '\0';
    p = at + 1;
  }
  const char *colon = strrchr(p, ':');
  if (colon == NULL || colon == p || (size_t)(colon - p) >= sizeof d->host)
    goto bad;
  memcpy(d->host, p, (size_t)(colon - p));
  d->host[colon - p] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (end == colon + 1 || port < 1 || port > 65535)
    goto bad;
  d->port = (int)port;
  d->db = 0;
  if (*end == '/') {
    long db = strtol(end + 1, &end, 10);
    if (db < 0 || db > 1000 || *end != '\0')
      goto bad;
    d->db = (int)db;
  } else if (*end != '\0') {
    goto bad;
  }
  return 0;
bad:
  snprintf(err, err_len,
           "expected redis://[USER@]HOST:PORT[/DB] (HOST an address or name, "
           "DB a number)");
  return -1;
}

/* The URL's form alone (od_store_ops.check_url): parse_url into a record
 * that is then dropped; it allocates nothing. */
static int rd_check_url(const char *rest, char *err, size_t err_len) {
  rds *d = calloc(1, sizeof *d);
  if (d == NULL) {
    snprintf(err, err_len, "out of memory");
    return -1;
  }
  int rc = parse_url(d, rest, err, err_len);
  free(d);
  return rc;
}

/* The layout key: refuses a Redis whose jobs another build wrote. */
static int check_layout(rds *d, redisContext *c, char *err, size_t err_len) {
  char want[48];
  snprintf(want, sizeof want, "%d:%zu", LAYOUT_VERSION, sizeof(od_job_rec));
  redisReply *r = redisCommand(c, "SET orfeas:layout %s NX GET", want);
  if (r == NULL) {
    snprintf(err, err_len, "no answer from Redis at %s:%d: %s", d->host,
             d->port, c->errstr);
    return -1;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    explain(d, "SET orfeas:layout", r->str, err, err_len);
    freeReplyObject(r);
    return -1;
  }
  int ok = r->type == REDIS_REPLY_NIL ||
           (r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0);
  if (!ok)
    snprintf(err, err_len,
             "Redis at %s:%d holds jobs of another orfeasd build (record "
             "layout %s, this build %s): run one build per Redis, or use "
             "another DB",
             d->host, d->port,
             r->type == REDIS_REPLY_STRING  ? r->str
             : r->type == REDIS_REPLY_ERROR ? r->str
                                            : "?",
             want);
  freeReplyObject(r);
  return ok ? 0 : -1;
}

static void rd_free(rds *d) {
  for (int i = 0; i < d->npool; i++)
    redisFree(d->pool[i]);
  for (int i = 0; i < d->pub_n; i++)
    free(d->pubq[(d->pub_head + i) % PUBQ_MAX]);
  pthread_mutex_destroy(&d->bus_mu);
  pthread_cond_destroy(&d->bus_cv);
  pthread_mutex_destroy(&d->pool_mu);
  pthread_mutex_destroy(&d->held_mu);
  pthread_cond_destroy(&d->hb_cv);
  free(d);
}

static od_store_rc rd_open(const char *rest, const od_store_opts *o, void **be,
                           char *err, size_t err_len) {
  rds *d = calloc(1, sizeof *d);
  if (d == NULL) {
    snprintf(err, err_len, "out of memory");
    return OD_STORE_DOWN;
  }
  pthread_mutex_init(&d->pool_mu, NULL);
  pthread_mutex_init(&d->held_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&d->hb_cv, &ca);
  pthread_mutex_init(&d->bus_mu, NULL);
  pthread_cond_init(&d->bus_cv, &ca);
  pthread_condattr_destroy(&ca);
  d->sub_fd = -1;
  if (o->password_file != NULL && o->password_file[0] &&
      snprintf(d->pass_file, sizeof d->pass_file, "%s", o->password_file) >=
          (int)sizeof d->pass_file) {
    snprintf(err, err_len, "--store-password-file: the path is too long");
    rd_free(d);
    return OD_STORE_DOWN;
  }
  if (parse_url(d, rest, err, err_len) != 0) {
    rd_free(d);
    return OD_STORE_DOWN;
  }
  if (o->max_jobs < 1 || o->queue_size < 1) {
    snprintf(err, err_len, "max_jobs and queue_size must be at least 1");
    rd_free(d);
    return OD_STORE_DOWN;
  }
  snprintf(d->url, sizeof d->url, "redis:%s", rest);
  d->queue_size = o->queue_size;
  d->max_jobs = o->max_jobs;
  d->max_attempts = o->max_attempts > 0 ? o->max_attempts : 3;
  d->lease_s = o->lease_s > 0 ? o->lease_s : DEFAULT_LEASE_S;
  snprintf(d->node, sizeof d->node, "%s", o->node_id ? o->node_id : "");
  if (d->node[0])
    snprintf(d->consumer, sizeof d->consumer, "%s", d->node);
  else
    snprintf(d->consumer, sizeof d->consumer, "pid%ld", (long)getpid());
  static const char *const bodies[S_COUNT] = {
      LUA_INSERT,   LUA_GET,   LUA_TRANSITION, LUA_ENQUEUE,
      LUA_POSITION, LUA_CLAIM, LUA_RENEW,      LUA_EVICT,
      LUA_STATS,    LUA_RATE,  LUA_REQUEUE};
  for (int k = 0; k < S_COUNT; k++) {
    d->sc[k].body = bodies[k];
    sha_hex(bodies[k], d->sc[k].sha);
  }
  redisContext *c = ctx_connect(d, err, err_len);
  if (c == NULL) {
    rd_free(d);
    return OD_STORE_DOWN;
  }
  if (check_layout(d, c, err, err_len) != 0) {
    ctx_put(d, c, 0);
    rd_free(d);
    return OD_STORE_DOWN;
  }
  ctx_put(d, c, 1);
  int rc = pthread_create(&d->hb, NULL, heartbeat, d);
  if (rc != 0) {
    snprintf(err, err_len, "cannot start the lease heartbeat: %s",
             strerror(rc));
    rd_free(d);
    return OD_STORE_DOWN;
  }
  d->hb_started = 1;
  if ((rc = pthread_create(&d->pub_th, NULL, publisher, d)) != 0) {
    snprintf(err, err_len, "cannot start the event publisher: %s",
             strerror(rc));
    rd_close(d);
    return OD_STORE_DOWN;
  }
  d->pub_started = 1;
  *be = d;
  return OD_STORE_OK;
}

static void rd_close(void *be) {
  rds *d = be;
  pthread_mutex_lock(&d->bus_mu);
  d->bus_stop = 1;
  if (d->sub_fd >= 0)
    shutdown(d->sub_fd, SHUT_RDWR); /* wakes the listener's read */
  pthread_cond_broadcast(&d->bus_cv);
  pthread_mutex_unlock(&d->bus_mu);
  if (d->pub_started)
    pthread_join(d->pub_th, NULL);
  if (d->sub_started)
    pthread_join(d->sub_th, NULL);
  if (d->hb_started) {
    pthread_mutex_lock(&d->held_mu);
    d->hb_stop = 1;
    pthread_cond_signal(&d->hb_cv);
    pthread_mutex_unlock(&d->held_mu);
    pthread_join(d->hb, NULL);
  }
  rd_free(d);
}

/* ---- the heartbeat ------------------------------------------------------- */

static void hold(rds *d, const od_job_rec *r, const char *entry) {
  pthread_mutex_lock(&d->held_mu);
  if (d->nheld < HELD_MAX) {
    held *h = &d->held[d->nheld++];
    snprintf(h->id, sizeof h->id, "%s", r->id);
    h->attempt = r->attempt;
    snprintf(h->entry, sizeof h->entry, "%s", entry);
  }
  pthread_mutex_unlock(&d->held_mu);
}

/* Forgets the claim of id at attempt (any attempt when attempt is 0); 1
 * when it was held. */
static int unhold(rds *d, const char *id, int attempt) {
  int found = 0;
  pthread_mutex_lock(&d->held_mu);
  for (int i = 0; i < d->nheld && !found; i++)
    if (strcmp(d->held[i].id, id) == 0 &&
        (attempt == 0 || d->held[i].attempt == attempt)) {
      d->held[i] = d->held[--d->nheld];
      found = 1;
    }
  pthread_mutex_unlock(&d->held_mu);
  return found;
}

static void *heartbeat(void *arg) {
  rds *d = arg;
  pthread_setname_np(pthread_self(), "od-store-hb");
  held snap[HELD_MAX];
  pthread_mutex_lock(&d->held_mu);
  while (!d->hb_stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    double step = d->lease_s / 3;
    until.tv_sec += (time_t)step;
    until.tv_nsec += (long)((step - floor(step)) * 1e9);
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    while (!d->hb_stop &&
           pthread_cond_timedwait(&d->hb_cv, &d->held_mu, &until) != ETIMEDOUT)
      ;
    if (d->hb_stop)
      break;
    int n = d->nheld;
    memcpy(snap, d->held, (size_t)n * sizeof *snap);
    pthread_mutex_unlock(&d->held_mu);
    redisContext *c = n > 0 ? ctx_get(d) : NULL;
    for (int i = 0; i < n && c != NULL; i++) {
      char att[16], lease[24];
      snprintf(att, sizeof att, "%d", snap[i].attempt);
      snprintf(lease, sizeof lease, "%lld", (long long)(d->lease_s * 1000));
      const char *av[5] = {snap[i].id, att, d->consumer, snap[i].entry, lease};
      redisReply *r = eval(d, c, S_RENEW, 5, av, NULL);
      if (r == NULL) {
        ctx_put(d, c, 0); /* Redis down: the next beat tries again */
        c = NULL;
        break;
      }
      int code = code_of(r);
      /* Counted only while this node still holds the claim: a run that
       * ended since the snapshot (and was claimed again) was not fenced. */
      if (code != OD_STORE_OK && unhold(d, snap[i].id, snap[i].attempt) &&
          code == OD_STORE_FENCED) {
        d->fenced++;
        od_logl(OD_LOG_WARN,
                "job %s: attempt %d was taken over by another node (its "
                "lease of %.1f s lapsed); this node's result will be dropped",
                snap[i].id, snap[i].attempt, d->lease_s);
      }
      freeReplyObject(r);
    }
    ctx_put(d, c, 1);
    pthread_mutex_lock(&d->held_mu);
  }
  pthread_mutex_unlock(&d->held_mu);
  return NULL;
}

/* ---- the event bus ------------------------------------------------------- */

static od_store_rc rd_publish(void *be, const char *id, int ev,
                              const char *text) {
  rds *d = be;
  size_t n = strlen(id) + strlen(text) + 16;
  char *m = malloc(n);
  if (m == NULL)
    return OD_STORE_FULL;
  snprintf(m, n, "%s %d %s", id, ev, text);
  pthread_mutex_lock(&d->bus_mu);
  int ok = d->pub_n < PUBQ_MAX && !d->bus_stop;
  if (ok) {
    d->pubq[(d->pub_head + d->pub_n) % PUBQ_MAX] = m;
    d->pub_n++;
    pthread_cond_signal(&d->bus_cv);
  }
  pthread_mutex_unlock(&d->bus_mu);
  if (!ok)
    free(m);
  return ok ? OD_STORE_OK : OD_STORE_FULL;
}

/* Sends the queued events in order, a batch per pipelined write; what
 * cannot be sent (Redis down) is dropped: subscribers get the job's state
 * again at their listener's resync. Sends what is left at close. */
static void *publisher(void *arg) {
  rds *d = arg;
  pthread_setname_np(pthread_self(), "od-store-pub");
  char *batch[PUB_BATCH];
  pthread_mutex_lock(&d->bus_mu);
  for (;;) {
    while (d->pub_n == 0 && !d->bus_stop)
      pthread_cond_wait(&d->bus_cv, &d->bus_mu);
    if (d->pub_n == 0)
      break;
    int n = d->pub_n < PUB_BATCH ? d->pub_n : PUB_BATCH;
    for (int i = 0; i < n; i++)
      batch[i] = d->pubq[(d->pub_head + i) % PUBQ_MAX];
    d->pub_head = (d->pub_head + n) % PUBQ_MAX;
    d->pub_n -= n;
    pthread_mutex_unlock(&d->bus_mu);
    redisContext *c = ctx_get(d);
    int ok = c != NULL;
    for (int i = 0; i < n && ok; i++)
      ok = redisAppendCommand(c, "PUBLISH " BUS_CHANNEL " %s", batch[i]) ==
           REDIS_OK;
    for (int i = 0; i < n && ok; i++) {
      redisReply *r = NULL;
      ok = redisGetReply(c, (void **)&r) == REDIS_OK;
      if (r)
        freeReplyObject(r);
    }
    ctx_put(d, c, ok);
    for (int i = 0; i < n; i++)
      free(batch[i]);
    pthread_mutex_lock(&d->bus_mu);
    /* Closing with Redis unreachable: the rest would only wait for the
     * connect timeout, batch after batch. */
    if (!ok && d->bus_stop) {
      for (int i = 0; i < d->pub_n; i++)
        free(d->pubq[(d->pub_head + i) % PUBQ_MAX]);
      d->pub_n = 0;
    }
  }
  pthread_mutex_unlock(&d->bus_mu);
  return NULL;
}

/* One message "<id> <ev> <json>" to the listener. */
static void deliver(rds *d, const char *msg, size_t len) {
  char id[40];
  int ev = 0, off = 0;
  if (len > 1 << 20 || sscanf(msg, "%39s %d %n", id, &ev, &off) < 2 ||
      off <= 0 || (size_t)off > len)
    return;
  d->lis.on_event(d->lis.u, id, ev, msg + off);
}

/* The listener: SUBSCRIBE on a context of its own (no read timeout: it
 * waits for messages; keepalive finds a dead peer, close shuts the socket
 * down), again after each loss, with on_resync once subscribed. */
static void *listener(void *arg) {
  rds *d = arg;
  pthread_setname_np(pthread_self(), "od-store-sub");
  for (;;) {
    pthread_mutex_lock(&d->bus_mu);
    int stop = d->bus_stop;
    pthread_mutex_unlock(&d->bus_mu);
    if (stop)
      break;
    redisContext *c = ctx_get(d);
    redisReply *r = c ? redisCommand(c, "SUBSCRIBE " BUS_CHANNEL) : NULL;
    int ok = r != NULL && r->type == REDIS_REPLY_ARRAY;
    if (r)
      freeReplyObject(r);
    if (ok) {
      redisEnableKeepAlive(c);
      redisSetTimeout(c, (struct timeval){0, 0});
      pthread_mutex_lock(&d->bus_mu);
      d->sub_fd = c->fd;
      ok = !d->bus_stop;
      pthread_mutex_unlock(&d->bus_mu);
    }
    if (ok && d->lis.on_resync)
      d->lis.on_resync(d->lis.u);
    while (ok) {
      r = NULL;
      if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL)
        break;
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
          r->element[2]->type == REDIS_REPLY_STRING &&
          strcmp(r->element[0]->str, "message") == 0)
        deliver(d, r->element[2]->str, r->element[2]->len);
      freeReplyObject(r);
    }
    pthread_mutex_lock(&d->bus_mu);
    d->sub_fd = -1;
    stop = d->bus_stop;
    if (!stop) { /* lost: wait a little, then again */
      struct timespec until;
      clock_gettime(CLOCK_MONOTONIC, &until);
      until.tv_nsec += 200 * 1000000L;
      if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&d->bus_cv, &d->bus_mu, &until);
    }
    pthread_mutex_unlock(&d->bus_mu);
    if (c)
      redisFree(c);
  }
  return NULL;
}

static int rd_listen(void *be, const od_store_listener *l, char *err,
                     size_t err_len) {
  rds *d = be;
  if (d->sub_started || l->on_event == NULL) {
    snprintf(err, err_len, "the event bus has a listener already");
    return -1;
  }
  d->lis = *l;
  int rc = pthread_create(&d->sub_th, NULL, listener, d);
  if (rc != 0) {
    snprintf(err, err_len, "cannot start the event listener: %s", strerror(rc));
    return -1;
  }
  d->sub_started = 1;
  return 0;
}

/* ---- calls --------------------------------------------------------------- */

static od_store_rc rd_recover(void *be,
                              void (*each)(const od_job_rec *r,
                                           od_job_state was, void *u),
                              void *u) {
  rds *d = be;
  redisContext *c = ctx_get(d);
  if (c == NULL)
    return OD_STORE_DOWN;
  od_store_rc rc = OD_STORE_OK;
  for (long off = 0;; off += 256) {
    redisReply *ids =
        redisCommand(c, "ZRANGE orfeas:all %ld %ld", off, off + 255);
    if (ids == NULL || ids->type != REDIS_REPLY_ARRAY) {
      if (ids)
        freeReplyObject(ids);
      rc = OD_STORE_DOWN;
      break;
    }
    size_t n = ids->elements;
    for (size_t i = 0; i < n; i++)
      redisAppendCommand(c,
                         "HMGET orfeas:job:%b rec base state attempt tries "
                         "owner ts seq",
                         ids->element[i]->str, (size_t)ids->element[i]->len);
    for (size_t i = 0; i < n; i++) {
      redisReply *a = NULL;
      if (redisGetReply(c, (void **)&a) != REDIS_OK) {
        rc = OD_STORE_DOWN;
        break;
      }
      od_job_rec r;
      if (rec_of(a, &r) == 0 && each)
        each(&r, r.state, u);
      freeReplyObject(a);
    }
    freeReplyObject(ids);
    if (rc != OD_STORE_OK || n < 256)
      break;
  }
  ctx_put(d, c, rc == OD_STORE_OK);
  return rc;
}

/* When an idle record last changed (memtab.c's idle_since). */
static double idle_since(const od_job_rec *r) {
  return r->t_ended > r->t_created ? r->t_ended : r->t_created;
}

/* Its place in the evict order, changed now: after every job changed
 * before, and no earlier than its idle_since (as sqlite orders its idle
 * jobs when it loads them). */
static double idle_score(const od_job_rec *r) {
  double now = od_wall(), since = idle_since(r);
  return since > now ? since : now;
}

static od_store_rc rd_insert(void *be, od_job_rec *r) {
  rds *d = be;
  if (r->state != OD_JOB_UPLOADED)
    return OD_STORE_CONFLICT;
  r->attempt = 0;
  r->owner[0] = '\0';
  r->seq = 0;
  char ub[24], since[32], max[16], score[32];
  snprintf(ub, sizeof ub, "%llu", (unsigned long long)r->upload_bytes);
  snprintf(since, sizeof since, "%.6f", r->t_created);
  snprintf(max, sizeof max, "%d", d->max_jobs);
  snprintf(score, sizeof score, "%.6f", idle_score(r));
  const char *av[7] = {r->id, (const char *)r, (const char *)r, ub, since, max,
                       score};
  size_t al[7] = {strlen(r->id), sizeof *r,   sizeof *r,    strlen(ub),
                  strlen(since), strlen(max), strlen(score)};
  long long seq = 0;
  od_store_rc rc = call_num(d, S_INSERT, 7, av, al, &seq);
  if (rc == OD_STORE_OK)
    r->seq = (uint64_t)seq;
  return rc;
}

static od_store_rc rd_get(void *be, const char *id, od_job_rec *out) {
  rds *d = be;
  const char *av[1] = {id};
  redisReply *x = call(d, S_GET, 1, av, NULL);
  if (x == NULL)
    return OD_STORE_DOWN;
  od_store_rc rc = (od_store_rc)code_of(x);
  if (rc == OD_STORE_OK && rec_of(x->element[1], out) != 0)
    rc = OD_STORE_DOWN;
  if (rc == OD_STORE_GONE) {
    const redisReply *t = x->element[1];
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", id);
    snprintf(out->error, sizeof out->error, "%.*s", (int)t->element[0]->len,
             t->element[0]->str);
    out->t_ended = dbl_of(t->element[1]);
  }
  freeReplyObject(x);
  return rc;
}

/* Test hook (tests/service/cluster_test.py lostreply; never set in
 * production): while the file ORFEAS_TEST_LOST_REPLY_FILE names exists, a
 * transition Redis ran answers DOWN, as when its reply timed out. */
static int reply_lost(void) {
  const char *p = getenv("ORFEAS_TEST_LOST_REPLY_FILE");
  return p != NULL && p[0] != '\0' && access(p, F_OK) == 0;
}

static od_store_rc rd_transition(void *be, const od_job_rec *next,
                                 unsigned from, int fence, od_job_rec *prev) {
  rds *d = be;
  if ((unsigned)next->state >= OD_JOB_STATE_COUNT)
    return OD_STORE_CONFLICT;
  char sfrom[16], sfence[16], st[4], tries[16], ts[32], hold_s[32], since[32],
      ob[24];
  snprintf(sfrom, sizeof sfrom, "%u", from);
  snprintf(sfence, sizeof sfence, "%d", fence);
  snprintf(st, sizeof st, "%d", (int)next->state);
  snprintf(tries, sizeof tries, "%d", next->tries);
  snprintf(ts, sizeof ts, "%.6f", next->t_started);
  snprintf(hold_s, sizeof hold_s, "%.6f", next->hold_until);
  snprintf(since, sizeof since, "%.6f", idle_since(next));
  snprintf(ob, sizeof ob, "%llu", (unsigned long long)next->output_bytes);
  char score[32], tq[32];
  snprintf(score, sizeof score, "%.6f", idle_score(next));
  snprintf(tq, sizeof tq, "%.6f", next->t_queued);
  const char *av[12] = {next->id, sfrom, sfence, (const char *)next,
                        st,       tries, ts,     hold_s,
                        since,    ob,    score,  tq};
  size_t al[12];
  for (int i = 0; i < 12; i++)
    al[i] = i == 3 ? sizeof *next : strlen(av[i]);
  redisReply *x = call(d, S_TRANSITION, 12, av, al);
  if (x != NULL && reply_lost()) {
    freeReplyObject(x);
    return OD_STORE_DOWN;
  }
  if (x == NULL)
    return OD_STORE_DOWN;
  od_store_rc rc = (od_store_rc)code_of(x);
  if (prev && rc != OD_STORE_NOT_FOUND && x->elements > 1 &&
      rec_of(x->element[1], prev) != 0)
    rc = OD_STORE_DOWN;
  freeReplyObject(x);
  /* A worker's end: the heartbeat stops renewing its claim. */
  if (fence > 0 && next->state != OD_JOB_PROCESSING &&
      (rc == OD_STORE_OK || rc == OD_STORE_FENCED))
    unhold(d, next->id, fence);
  return rc;
}

static od_store_rc rd_enqueue(void *be, const char *id, int *position) {
  rds *d = be;
  if (d->closed)
    return OD_STORE_CLOSED;
  char qs[16];
  snprintf(qs, sizeof qs, "%d", d->queue_size);
  const char *av[2] = {id, qs};
  long long pos = 0;
  od_store_rc rc = call_num(d, S_ENQUEUE, 2, av, NULL, &pos);
  if (rc == OD_STORE_OK)
    *position = (int)pos;
  return rc;
}

#define REQUEUE_BATCH 1000 /* a call's work; the rest waits a sweep */

static od_store_rc rd_requeue_stranded(void *be, double before, int *n) {
  rds *d = be;
  *n = 0;
  if (d->closed)
    return OD_STORE_CLOSED;
  char b[32], mx[16];
  snprintf(b, sizeof b, "%.6f", before);
  snprintf(mx, sizeof mx, "%d", REQUEUE_BATCH);
  const char *av[2] = {b, mx};
  long long got = 0;
  od_store_rc rc = call_num(d, S_REQUEUE, 2, av, NULL, &got);
  if (rc == OD_STORE_OK)
    *n = (int)got;
  return rc;
}

static od_store_rc rd_position(void *be, const char *id, int *position) {
  rds *d = be;
  const char *av[1] = {id};
  long long pos = 0;
  od_store_rc rc = call_num(d, S_POSITION, 1, av, NULL, &pos);
  if (rc == OD_STORE_OK)
    *position = (int)pos;
  return rc;
}

/* A job taken past max_attempts: failed, fenced by the claim just made
 * (so a node that also took it cannot be overwritten). held_s: the lease
 * of the node that lost it. */
static void fail_lost(rds *d, od_job_rec *r, double held_s) {
  od_job_rec f = *r;
  f.state = OD_JOB_FAILED;
  snprintf(f.error, sizeof f.error,
           "the node running this job was lost %d time%s (no lease renewal "
           "for %.1f s; --max-attempts %d); it is not run again: submit it "
           "again, or report the image if this repeats",
           r->tries - 1, r->tries - 1 == 1 ? "" : "s", held_s, d->max_attempts);
  f.http_status = 500;
  f.output_name[0] = '\0';
  f.output_bytes = 0;
  f.t_ended = od_wall();
  if (rd_transition(d, &f, OD_STATE_BIT(OD_JOB_PROCESSING), r->attempt, NULL) ==
      OD_STORE_OK) {
    od_logl(OD_LOG_WARN, "job %s failed: %s", r->id, f.error);
    rd_publish(d, r->id, -1, ""); /* subscribers: look it up */
  }
}

/* One pass of the claim script (entry "" = take; else start that entry).
 * OK with *out, EMPTY, or DOWN. */
static od_store_rc claim_once(rds *d, redisContext *c, const char *owner,
                              const char *entry, const char *job,
                              od_job_rec *out, int *ok) {
  char now[32], max[16], lease[24];
  snprintf(now, sizeof now, "%.6f", od_wall());
  snprintf(max, sizeof max, "%d", d->max_attempts);
  snprintf(lease, sizeof lease, "%lld", (long long)(d->lease_s * 1000));
  const char *av[7] = {d->consumer, owner, now, max, lease, entry, job};
  redisReply *x = eval(d, c, S_CLAIM, 7, av, NULL);
  *ok = x != NULL;
  if (x == NULL)
    return OD_STORE_DOWN;
  int code = code_of(x);
  od_store_rc rc = OD_STORE_EMPTY;
  if (code == CLAIM_FRESH || code == CLAIM_LAPSED || code == CLAIM_POISON) {
    if (x->elements < 3 || rec_of(x->element[1], out) != 0) {
      rc = OD_STORE_DOWN;
    } else {
      const redisReply *e = x->element[2];
      char ent[48];
      snprintf(ent, sizeof ent, "%.*s", (int)e->len, e->str);
      /* The holder's lease (its node's --store-lease), which lapsed. */
      double held_s = d->lease_s;
      if (x->elements >= 4 && x->element[3]->type == REDIS_REPLY_INTEGER)
        held_s = x->element[3]->integer / 1000.0;
      if (code == CLAIM_LAPSED)
        d->reclaimed++;
      if (code == CLAIM_POISON) {
        fail_lost(d, out, held_s);
        rc = OD_STORE_EMPTY; /* looked at: look again */
      } else {
        hold(d, out, ent);
        rc = OD_STORE_OK;
      }
      if (code != CLAIM_FRESH)
        od_logl(OD_LOG_WARN,
                "job %s: its node stopped renewing its claim for %.1f s; "
                "taken over as attempt %d (try %d of %d)",
                out->id, held_s, out->attempt, out->tries, d->max_attempts);
    }
  }
  freeReplyObject(x);
  return rc;
}

void (*od_store_redis_claim_hook)(const char *entry);

static od_store_rc rd_claim(void *be, const char *owner, int block_ms,
                            od_job_rec *out) {
  rds *d = be;
  char who[64];
  if (d->node[0])
    snprintf(who, sizeof who, "%.40s:%.20s", d->node, owner ? owner : "");
  else
    snprintf(who, sizeof who, "%.60s", owner ? owner : "");
  double deadline = block_ms < 0 ? INFINITY : od_now() + block_ms / 1000.0;
  /* Block at most half a lease, so lapsed claims and a closed queue are
   * seen; at most 1 s. */
  double poll_s = d->lease_s / 2 < 1 ? d->lease_s / 2 : 1;
  for (;;) {
    if (d->closed)
      return OD_STORE_CLOSED;
    redisContext *c = ctx_get(d);
    if (c == NULL)
      return OD_STORE_DOWN;
    int ok;
    od_store_rc rc = claim_once(d, c, who, "", "", out, &ok);
    if (rc != OD_STORE_EMPTY || block_ms == 0) {
      ctx_put(d, c, ok);
      return rc;
    }
    double left = deadline - od_now();
    if (left <= 0) {
      ctx_put(d, c, 1);
      return OD_STORE_EMPTY;
    }
    double wait = left < poll_s ? left : poll_s;
    long wait_ms = (long)(wait * 1000) > 0 ? (long)(wait * 1000) : 1;
    if (od_store_redis_claim_hook != NULL)
      od_store_redis_claim_hook("");
    redisSetTimeout(c, tv_of(OP_TIMEOUT_S + wait));
    redisReply *x = redisCommand(
        c,
        "XREADGROUP GROUP workers %s COUNT 1 BLOCK %ld STREAMS orfeas:jobs >",
        d->consumer, wait_ms);
    redisSetTimeout(c, tv_of(OP_TIMEOUT_S));
    if (x == NULL || x->type == REDIS_REPLY_ERROR) {
      if (x)
        freeReplyObject(x);
      ctx_put(d, c, 0);
      return OD_STORE_DOWN;
    }
    /* [[stream, [[entry, [job, id]]]]] */
    rc = OD_STORE_EMPTY;
    ok = 1;
    if (x->type == REDIS_REPLY_ARRAY && x->elements == 1) {
      const redisReply *es = x->element[0]->element[1];
      for (size_t i = 0; i < es->elements && rc == OD_STORE_EMPTY && ok; i++) {
        const redisReply *e = es->element[i];
        if (e->elements < 2 || e->element[1]->type != REDIS_REPLY_ARRAY ||
            e->element[1]->elements < 2)
          continue;
        char ent[48], job[64];
        snprintf(ent, sizeof ent, "%.*s", (int)e->element[0]->len,
                 e->element[0]->str);
        snprintf(job, sizeof job, "%.*s", (int)e->element[1]->element[1]->len,
                 e->element[1]->element[1]->str);
        if (od_store_redis_claim_hook != NULL)
          od_store_redis_claim_hook(ent);
        rc = claim_once(d, c, who, ent, job, out, &ok);
      }
    }
    freeReplyObject(x);
    ctx_put(d, c, ok);
    if (rc != OD_STORE_EMPTY)
      return rc;
  }
}

static od_store_rc rd_evict(void *be, const od_evict_sel *sel,
                            od_job_rec *gone) {
  rds *d = be;
  char ib[32], now[32], max[16];
  snprintf(ib, sizeof ib, "%.6f", sel->idle_before);
  snprintf(now, sizeof now, "%.6f", od_wall());
  snprintf(max, sizeof max, "%d", d->max_jobs);
  char reason[256];
  snprintf(reason, sizeof reason, "%s", sel->reason ? sel->reason : "");
  const char *av[5] = {sel->id ? sel->id : "", ib, reason, now, max};
  redisReply *x = call(d, S_EVICT, 5, av, NULL);
  if (x == NULL)
    return OD_STORE_DOWN;
  od_store_rc rc = (od_store_rc)code_of(x);
  od_job_rec v;
  if (rc == OD_STORE_OK && rec_of(x->element[1], &v) != 0)
    rc = OD_STORE_DOWN;
  if (rc == OD_STORE_OK && gone)
    *gone = v;
  freeReplyObject(x);
  return rc;
}

static od_store_rc rd_stats(void *be, od_store_stats *st) {
  rds *d = be;
  redisReply *x = call(d, S_STATS, 0, NULL, NULL);
  if (x == NULL)
    return OD_STORE_DOWN;
  if (x->type != REDIS_REPLY_ARRAY || x->elements != 5 ||
      x->element[0]->elements != 8) {
    freeReplyObject(x);
    return OD_STORE_DOWN;
  }
  memset(st, 0, sizeof *st);
  const redisReply *s = x->element[0];
  for (int i = 0; i < OD_JOB_STATE_COUNT; i++)
    st->by_state[i] = int_of(s->element[i]);
  st->jobs = int_of(s->element[5]);
  st->upload_bytes = (uint64_t)int_of(s->element[6]);
  st->output_bytes = (uint64_t)int_of(s->element[7]);
  st->queue_depth = int_of(x->element[1]);
  double age_ms = dbl_of(x->element[2]);
  st->oldest_queued_s = age_ms > 0 ? age_ms / 1000 : 0;
  st->tombstones = int_of(x->element[3]);
  st->nodes = int_of(x->element[4]);
  st->reclaimed = d->reclaimed;
  st->fenced = d->fenced;
  freeReplyObject(x);
  return OD_STORE_OK;
}

static od_store_rc rd_rate_take(void *be, const char *key, double rate,
                                double burst, int *wait_s) {
  rds *d = be;
  char r[32], b[32];
  snprintf(r, sizeof r, "%.6f", rate);
  snprintf(b, sizeof b, "%.6f", burst);
  const char *av[3] = {key, r, b};
  redisReply *x = call(d, S_RATE, 3, av, NULL);
  if (x == NULL)
    return OD_STORE_DOWN;
  *wait_s = (int)int_of(x);
  freeReplyObject(x);
  return OD_STORE_OK;
}

static void rd_close_queue(void *be, void (*each)(const char *id, void *u),
                           void *u) {
  (void)each;
  (void)u;
  ((rds *)be)->closed = 1;
}

static od_store_rc rd_ping(void *be) {
  rds *d = be;
  redisContext *c = ctx_get(d);
  if (c == NULL)
    return OD_STORE_DOWN;
  redisReply *r = redisCommand(c, "PING");
  int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
  if (r)
    freeReplyObject(r);
  ctx_put(d, c, ok);
  return ok ? OD_STORE_OK : OD_STORE_DOWN;
}

const od_store_ops od_store_redis_ops = {
    .scheme = "redis",
    .durable = 1,
    .shared = 1,
    .open = rd_open,
    .check_url = rd_check_url,
    .close = rd_close,
    .recover = rd_recover,
    .insert = rd_insert,
    .get = rd_get,
    .transition = rd_transition,
    .enqueue = rd_enqueue,
    .claim = rd_claim,
    .position = rd_position,
    .requeue_stranded = rd_requeue_stranded,
    .evict = rd_evict,
    .stats = rd_stats,
    .close_queue = rd_close_queue,
    .ping = rd_ping,
    .publish = rd_publish,
    .listen = rd_listen,
    .rate_take = rd_rate_take,
};
