// Tensor-core FlashAttention-2 for f16/bf16, head dim 64 and 128 (see FlashAttention.h for the
// contract). Plain sm_80-style code: mma.sync.m16n8k16 (f32 accumulate), ldmatrix, cp.async
// multi-stage buffering with one block barrier per tile; it runs on sm_90 as is.
// The file runs past 800 lines on purpose: forward, backward and their launch code share the
// fragment-layout and swizzle helpers below, whose invariants (documented once, here) must not
// drift apart between translation units.
//
// ---- Fragment layouts (PTX ISA, mma.m16n8k16 with 16-bit inputs) -------------------------------
// lane = threadIdx.x % 32, g = lane / 4 ("groupID"), t = lane % 4 ("thread in group").
//   A (16 x 16, row major, 4 x b32):  a[0] = A[g  ][2t, 2t+1]     a[1] = A[g+8][2t, 2t+1]
//                                     a[2] = A[g  ][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8, element B[k][n], 2 x b32):  b[0] = B[2t, 2t+1][g]   b[1] = B[2t+8, 2t+9][g]
//   C (16 x 8, f32 x 4):  c[0], c[1] = C[g][2t, 2t+1]    c[2], c[3] = C[g+8][2t, 2t+1]
// In each b32 the lower half holds the element with the smaller column (A, C) or k (B) index.
//
// ldmatrix.x4: lanes 8i..8i+7 give the addresses of the 8 rows (16 bytes each) of matrix i, and
// register i of every lane receives from matrix i: M[lane/4][2(lane%4), +1] (plain), or with
// .trans M[2(lane%4), +1][lane/4] (two rows, one column). Hence, for a 16 x 16 block stored
// row major at rows r0.., 16-bit columns c0..:
//   pattern A: row = r0 + lane%8 + 8*((lane/8)%2), column = c0 + 8*(lane/16)
//     plain  -> the A fragment of the block (rows = m, columns = k).
//     .trans -> B fragments of two n-tiles when the stored rows are k and the columns n:
//               r[0], r[1] = (b0, b1) of columns c0..c0+7, r[2], r[3] = of columns c0+8..c0+15.
//   pattern B: row = r0 + lane%8 + 8*(lane/16), column = c0 + 8*((lane/8)%2)
//     plain  -> B fragments of two n-tiles when the stored rows are n and the columns k:
//               r[0], r[1] = (b0, b1) of rows r0..r0+7, r[2], r[3] = of rows r0+8..r0+15.
//     .trans -> the A fragment of the transposed block (A[m][k] = stored[k][m]): rows are k.
// The C fragment of two adjacent n-tiles (columns 16j..16j+15) is the A fragment of k-chunk j
// once packed to 16 bits: {c0c1 of tile 2j, c2c3 of tile 2j, c0c1 of tile 2j+1, c2c3 of 2j+1}.
//
// ---- Shared memory ----------------------------------------------------------------------------
// Every tile is row major with RB = 2 * columns bytes per row (128 or 256), cut into 16-byte
// chunks; chunk c of row r is stored at chunk c ^ (r % 8) of that row (an XOR swizzle), so the 8
// row addresses of one ldmatrix phase, and the 8 16-byte cp.async writes of a quarter warp, fall
// in 8 different bank groups. Because r % 8 == lane % 8 in both patterns, the per-lane address
// of a fragment is  tile + r0 * RB + (base ^ ((c0 / 16) << 5))  with base = (lane's row) * RB +
// ((lane's chunk bit ^ lane % 8) << 4) computed once: since c0 / 16 < RB / 32, the XOR only
// flips bits 5..7 of the chunk offset, which the row part (a multiple of RB >= 128; of 256 when
// bit 7 is flipped) leaves zero. (Verified by emulating every ldmatrix/mma of both kernels on
// the CPU, bank-conflict freedom included.) The tiles start 256-byte aligned.
//
// ---- Forward (per block: 128 query rows of one (b, h); 4 warps x 32 rows) ---------------------
// K/V tiles of 64 keys go through a ring of cp.async stages (zero-filled past S): 3 stages at D 64
// (prefetch two tiles ahead), 2 at D 128 (where 3 would leave room for only one block per SM).
// The prefetch is issued after the tile's barrier, into the stage every warp has just finished,
// so one barrier per tile suffices. S = Q K^T per warp in registers (32 x 64 f32), masking only
// on tiles that need it (causal diagonal, padding, S edge), online softmax in base 2 with the
// running max in raw score units, P packed to 16 bits and O += P V. Q lives in registers (D 64) or
// is re-read from shared memory (D 128, registers are needed for the 32 x 128 O accumulator). The
// output goes through shared memory for 16-byte coalesced stores. Blocks are launched heaviest
// first (causal: last query block first).
//
// ---- Backward (per block: 128 keys of one (b, hkv)) -------------------------------------------
// A prep kernel computes delta = rowsum(dO * O), lse2 = lse * log2(e) (+inf for rows with no
// visible key, so their P is 0) and zeroes an f32 dQ accumulator. The main kernel keeps K, V
// in shared memory and dK, dV in registers, and walks the query blocks (64 rows, double
// buffered Q, dO, lse2, delta) of every query head of its kv group. Each warp computes
// S^T = K_w Q^T and dP^T = V_w dO^T for its keys, so P^T and dS^T come out as C fragments
// (key rows) that are the A operands of dV += P^T dO and dK += dS^T Q. dS^T is also written to
// shared memory (double buffered), and after the next step's barrier dQ_partial = dS K of the
// finished step is computed with the warps tiled 2 (32 query rows) x (warps / 2) (column
// groups) and added to the f32 accumulator with vector atomics (red.global.add.v2.f32). So each
// step has one block barrier, not two (one before and one after the dS^T exchange), and the dQ
// work of step i overlaps across warps with step i + 1's S^T. A last kernel scales and converts
// dQ. The loop reads every Q and dO fragment from shared memory once per warp and product, so
// what bounds it is shared-memory (ldmatrix) traffic per MMA; the warp shapes raise the MMAs
// per fragment read:
//   D 64, "wide": 4 warps x 32 keys (two m-tiles), two blocks per SM. Each Q / dO fragment feeds
//     both m-tiles; the 64 queries of a step go in two passes of 32 so that S^T and dP^T of 32
//     keys fit in registers next to dK, dV (32 x 64 each). 0.4 ldmatrix per MMA (was 0.625 with
//     8 warps x 16 keys); H100: backward 0.86 -> 0.62 ms at B2 H16 T4096.
//   D 128, "split": 8 warps; warps 2kw and 2kw + 1 share 32 keys (key group kw). For S^T and
//     dP^T each takes half of the step's queries (32 keys x 32 queries, both m-tiles fed by each
//     fragment); P^T and dS^T go to shared memory, a 64-thread named barrier joins the pair, and
//     each then does dV += P^T dO and dK += dS^T Q over all 64 queries for its half of the D
//     columns (32 keys x 64 columns: dK, dV take 128 registers as with 16 keys x 128). 0.45
//     ldmatrix per MMA (was 0.575), no spills; H100: backward 0.85 -> 0.77 ms at B4 H16 T2048.
// Why atomics rather than a separate dQ kernel: a dQ kernel would recompute S and dP (7 GEMMs
// per tile instead of 5, +40% tensor work); the atomics are fire-and-forget reductions that
// overlap with the next tile's math, and with 128-key blocks each dQ element receives S/128
// additions. This is FlashAttention-2's choice too.
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/CudaCommon.cuh"
#include "kernels/cuda/FlashAttention.h"

namespace lathe::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// ---- device helpers ----------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldsm4t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a * b (m16n8k16, f32 accumulate).
template <typename E>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1);
template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4],
                                                   uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                            uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one b32 of 16-bit values, `lo` in the lower half.
template <typename E>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Eight 16-bit values (one uint4) as floats.
template <typename E>
__device__ __forceinline__ void unpack8(const uint4& u, float (&f)[8]) {
  const E* e = reinterpret_cast<const E*>(&u);
#pragma unroll
  for (int i = 0; i < 8; ++i) f[i] = load(e[i]);
}

// 16-byte async copy global -> shared; `valid` false writes 16 zero bytes with src-size 0, which
// reads nothing (the address may then be out of range, as in FlashInfer's zero-fill loads).
__device__ __forceinline__ void cpAsync16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cpAsync4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void stShared32(uint32_t addr, uint32_t v) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ uint4 ldShared128(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr)
               : "memory");
  return v;
}
__device__ __forceinline__ float2 ldShared64f(uint32_t addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(addr) : "memory");
  return v;
}

__device__ __forceinline__ float ex2(float x) {  // 2^x; ex2(-inf) = +0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled tile of RB bytes per row.
template <int RB>
__device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return static_cast<uint32_t>(row * RB + ((chunk ^ (row & 7)) << 4));
}
// Per-lane base offsets of the two ldmatrix address patterns (see the header comment).
template <int RB>
__device__ __forceinline__ uint32_t baseA(int lane) {
  return swz<RB>((lane & 7) + ((lane >> 3) & 1) * 8, lane >> 4);
}
template <int RB>
__device__ __forceinline__ uint32_t baseB(int lane) {
  return swz<RB>((lane & 7) + (lane >> 4) * 8, (lane >> 3) & 1);
}

// ---- forward -----------------------------------------------------------------------------------

struct FwdParams {
  const void* q;
  const void* k;
  const void* v;
  const bool* pad;  // [B, S] or null
  void* out;
  float* lse;
  int H, Hkv, T, S;
  float scale, sl2;  // scale and scale * log2(e)
  int causal;
};

template <int D>
struct FwdCfg {
  static constexpr int kWarps = 4, kThreads = 32 * kWarps;
  static constexpr int kMT = 2;  // 16-row m-tiles per warp
  static constexpr int kBr = 16 * kMT * kWarps, kBc = 64;
  static constexpr int kRB = 2 * D;
  static constexpr bool kQRegs = D <= 64;  // Q fragments kept in registers
  // K/V ring: 3 stages (prefetch two tiles ahead) where 2 blocks per SM still fit (D 64: 64 KB
  // per block), else 2 (D 128: 96 KB per block).
  static constexpr int kStages = D <= 64 ? 3 : 2;
  // Q, kStages x (K, V), and 256 bytes to align the base.
  static constexpr size_t kSmem = size_t(kBr) * kRB + 2 * kStages * size_t(kBc) * kRB + 256;
};

template <typename E, int D>
__global__ void __launch_bounds__(FwdCfg<D>::kThreads, 2) flashFwdKernel(const FwdParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // needs sm_80+ (ldmatrix, cp.async, bf16 mma); the host side never launches it
#else
  using Cfg = FwdCfg<D>;
  constexpr int kBr = Cfg::kBr, kBc = Cfg::kBc, kRB = Cfg::kRB, kMT = Cfg::kMT;
  constexpr int kThreads = Cfg::kThreads;
  constexpr int kDC = D / 8;    // 16-byte chunks per row
  constexpr int kKD = D / 16;   // k-steps over the head dim
  constexpr int kNS = kBc / 8;  // n-tiles of S
  constexpr int kNO = D / 8;    // n-tiles of O
  constexpr bool kQRegs = Cfg::kQRegs;
  constexpr int kStages = Cfg::kStages;
  constexpr uint32_t kKVBytes = kBc * kRB;

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sQ = (smemAddr(smem) + 255u) & ~255u;
  const uint32_t sK = sQ + kBr * kRB;           // kStages stages
  const uint32_t sV = sK + kStages * kKVBytes;  // kStages stages

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tq = lane & 3;
  const int bh = blockIdx.x, b = bh / p.H, h = bh - b * p.H;
  const int group = p.H / p.Hkv;
  const int64_t kvh = static_cast<int64_t>(b) * p.Hkv + h / group;
  const int m0 = static_cast<int>(gridDim.y - 1 - blockIdx.y) * kBr;  // heaviest blocks first
  const int T = p.T, S = p.S, off = S - T;

  const E* qg = static_cast<const E*>(p.q) + (static_cast<int64_t>(bh) * T + m0) * D;
  const E* kg = static_cast<const E*>(p.k) + kvh * S * D;
  const E* vg = static_cast<const E*>(p.v) + kvh * S * D;
  const bool* padb = p.pad ? p.pad + static_cast<int64_t>(b) * S : nullptr;

  // Keys any real row of this block can see: [0, kv_end).
  const int rows_end = min(m0 + kBr, T);
  const int kv_end = p.causal ? min(S, rows_end + off) : S;
  const int nt = kv_end > 0 ? (kv_end + kBc - 1) / kBc : 0;

  // Copies: thread tid moves chunk lc of rows lr, lr + kRS, ... (kRS a multiple of 8, so the
  // swizzle of those rows equals lr's and the shared offsets differ by constants). Rows past T
  // or S are zero-filled.
  constexpr int kRS = kThreads / kDC;
  const int lr = tid / kDC, lc = tid % kDC;
  const uint32_t ldOff = swz<kRB>(lr, lc);
  {
    const E* src = qg + lr * D + lc * 8;
#pragma unroll
    for (int i = 0; i < kBr / kRS; ++i)
      cpAsync16(sQ + ldOff + i * kRS * kRB, src + i * kRS * D, m0 + lr + i * kRS < T);
  }
  auto loadKV = [&](int tile, int stage) {
    const int64_t o = static_cast<int64_t>(tile * kBc + lr) * D + lc * 8;
    const E* ks = kg + o;
    const E* vs = vg + o;
    const int lim = S - tile * kBc - lr;
    const uint32_t so = stage * kKVBytes + ldOff;
#pragma unroll
    for (int i = 0; i < kBc / kRS; ++i) {
      cpAsync16(sK + so + i * kRS * kRB, ks + i * kRS * D, i * kRS < lim);
      cpAsync16(sV + so + i * kRS * kRB, vs + i * kRS * D, i * kRS < lim);
    }
  };
  // Prologue: tiles 0 .. kStages - 2, one commit group each (Q rides in the first).
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < nt) loadKV(i, i);
    cpAsyncCommit();
  }

  float o[kMT][kNO][4];
  float mrow[kMT][2], lrow[kMT][2];  // running max (raw score units) and partial row sums
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int n = 0; n < kNO; ++n) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.f;
    mrow[mt][0] = mrow[mt][1] = -INFINITY;
    lrow[mt][0] = lrow[mt][1] = 0.f;
  }
  uint32_t qf[kQRegs ? kMT : 1][kQRegs ? kKD : 1][4];

  const uint32_t bA = baseA<kRB>(lane), bB = baseB<kRB>(lane);
  const uint32_t qWarp = sQ + warp * (16 * kMT) * kRB;  // this warp's 32 rows
  const float sl2 = p.sl2;

  // One barrier per tile: after it, tile t is visible and every warp is done with tile t - 1,
  // whose stage the prefetch of tile t + kStages - 1 then refills.
  int stage = 0;  // t % kStages
  for (int t = 0; t < nt; ++t) {
    cpAsyncWait<kStages - 2>();  // the groups of tiles t + 1 .. t + kStages - 2 may be in flight
    __syncthreads();
    {
      const int pf = t + kStages - 1;
      if (pf < nt) loadKV(pf, stage == 0 ? kStages - 1 : stage - 1);
      cpAsyncCommit();
    }
    const uint32_t kS = sK + stage * kKVBytes, vS = sV + stage * kKVBytes;
    stage = stage + 1 == kStages ? 0 : stage + 1;
    if constexpr (kQRegs) {
      if (t == 0) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int kk = 0; kk < kKD; ++kk)
            ldsm4(qf[mt][kk], qWarp + mt * 16 * kRB + (bA ^ (kk << 5)));
      }
    }

    // S = Q K^T: rows = queries (A from Q, pattern A), columns = keys (B from K rows, pattern B).
    float s[kMT][kNS][4];
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int n = 0; n < kNS; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kKD; ++kk) {
      uint32_t qa[kMT][4];
      if constexpr (kQRegs) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int e = 0; e < 4; ++e) qa[mt][e] = qf[mt][kk][e];
      } else {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) ldsm4(qa[mt], qWarp + mt * 16 * kRB + (bA ^ (kk << 5)));
      }
#pragma unroll
      for (int np = 0; np < kBc / 16; ++np) {
        uint32_t kb[4];
        ldsm4(kb, kS + np * 16 * kRB + (bB ^ (kk << 5)));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma<E>(s[mt][2 * np], qa[mt], kb[0], kb[1]);
          mma<E>(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
        }
      }
    }

    // Masks: keys past S, padded keys, keys past the causal limit of the row.
    const int n0 = t * kBc;
    if (padb != nullptr || n0 + kBc > S || (p.causal && n0 + kBc - 1 > m0 + off)) {
      // Column c = 8n + 2tq + e of the tile is key n0 + c; row i sees columns c < lim(i) =
      // min(S, i + off + 1) - n0 (causal) or S - n0.
      int lim[kMT][2];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
          const int i = m0 + warp * 16 * kMT + mt * 16 + g + 8 * hh;
          lim[mt][hh] = (p.causal ? min(S, i + off + 1) : S) - n0;
        }
#pragma unroll
      for (int n = 0; n < kNS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = 8 * n + 2 * tq + e;
          const bool padded = padb != nullptr && !padb[min(n0 + c, S - 1)];
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int hh = 0; hh < 2; ++hh)
              if (padded || c >= lim[mt][hh]) s[mt][n][2 * hh + e] = -INFINITY;
        }
    }

    // Online softmax (base 2). Row g uses c[0], c[1]; row g + 8 uses c[2], c[3]; the 4 lanes of
    // a quad hold the rest of the row.
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        float mx = mrow[mt][hh];
#pragma unroll
        for (int n = 0; n < kNS; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * hh], s[mt][n][2 * hh + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float msc = mx == -INFINITY ? 0.f : mx * sl2;  // all masked so far: keep p = 0
        const float corr = ex2(mrow[mt][hh] * sl2 - msc);    // 0 when the old max was -inf
        mrow[mt][hh] = mx;
        float rs = 0.f;
#pragma unroll
        for (int n = 0; n < kNS; ++n) {
          const float p0 = ex2(fmaf(s[mt][n][2 * hh], sl2, -msc));
          const float p1 = ex2(fmaf(s[mt][n][2 * hh + 1], sl2, -msc));
          s[mt][n][2 * hh] = p0;
          s[mt][n][2 * hh + 1] = p1;
          rs += p0 + p1;
        }
        lrow[mt][hh] = lrow[mt][hh] * corr + rs;
#pragma unroll
        for (int n = 0; n < kNO; ++n) {
          o[mt][n][2 * hh] *= corr;
          o[mt][n][2 * hh + 1] *= corr;
        }
      }

      // O += P V: A = P (C fragments packed), B from V rows = keys (pattern A, .trans).
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      uint32_t pa[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        pa[mt][0] = pack2<E>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = pack2<E>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = pack2<E>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = pack2<E>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t vb[4];
        ldsm4t(vb, vS + kk * 16 * kRB + (bA ^ (dp << 5)));
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          mma<E>(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
          mma<E>(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
        }
      }
    }
  }

  // Epilogue: O / l through this warp's own rows of the Q tile, then 16-byte stores.
  cpAsyncWait<0>();
  __syncthreads();  // (only matters when nt == 0: the Q copies of other threads)
  float* lseg = p.lse + static_cast<int64_t>(bh) * T;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      float l = lrow[mt][hh];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int r = warp * 16 * kMT + mt * 16 + g + 8 * hh;  // row within the block
#pragma unroll
      for (int n = 0; n < kNO; ++n)
        stShared32(sQ + swz<kRB>(r, n) + 4 * tq,
                   pack2<E>(o[mt][n][2 * hh] * inv, o[mt][n][2 * hh + 1] * inv));
      if (tq == 0 && m0 + r < T)
        lseg[m0 + r] = l > 0.f ? mrow[mt][hh] * p.scale + logf(l) : -INFINITY;
    }
  __syncwarp();
  E* og = static_cast<E*>(p.out) + (static_cast<int64_t>(bh) * T + m0) * D;
#pragma unroll
  for (int i = 0; i < 16 * kMT * kDC / 32; ++i) {
    const int c = lane + 32 * i, r = warp * 16 * kMT + c / kDC, cc = c % kDC;
    if (m0 + r < T)
      *reinterpret_cast<uint4*>(og + static_cast<int64_t>(r) * D + cc * 8) =
          ldShared128(sQ + swz<kRB>(r, cc));
  }
#endif
}

// ---- backward ----------------------------------------------------------------------------------

// delta = rowsum(dO * O), lse2 = lse * log2(e) (+inf where lse = -inf), dq accumulator = 0.
// D / 8 consecutive threads per row (8 or 16: always inside one warp).
template <typename E, int D>
__global__ void flashBwdPrepKernel(const E* out, const E* gout, const float* lse, float* lse2,
                                   float* delta, float* dqacc, int64_t rows) {
  constexpr int kTPR = D / 8;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = idx / kTPR;
  const int c = static_cast<int>(idx % kTPR);
  float acc = 0.f;
  if (row < rows) {
    const uint4 uo = *reinterpret_cast<const uint4*>(out + row * D + c * 8);
    const uint4 ug = *reinterpret_cast<const uint4*>(gout + row * D + c * 8);
    float fo[8], fg[8];
    unpack8<E>(uo, fo);
    unpack8<E>(ug, fg);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc = fmaf(fo[e], fg[e], acc);
    float4* z = reinterpret_cast<float4*>(dqacc + row * D + c * 8);
    z[0] = make_float4(0.f, 0.f, 0.f, 0.f);
    z[1] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
#pragma unroll
  for (int s = kTPR / 2; s > 0; s /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, s);
  if (row < rows && c == 0) {
    delta[row] = acc;
    const float l = lse[row];
    lse2[row] = l == -INFINITY ? INFINITY : l * kLog2e;
  }
}

// gq = dqacc * scale, 8 elements per thread.
template <typename E>
__global__ void flashDqConvertKernel(const float* dqacc, E* gq, int64_t n8, float scale) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n8;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float4 a = reinterpret_cast<const float4*>(dqacc)[2 * i];
    const float4 c = reinterpret_cast<const float4*>(dqacc)[2 * i + 1];
    uint4 u;
    u.x = pack2<E>(a.x * scale, a.y * scale);
    u.y = pack2<E>(a.z * scale, a.w * scale);
    u.z = pack2<E>(c.x * scale, c.y * scale);
    u.w = pack2<E>(c.z * scale, c.w * scale);
    reinterpret_cast<uint4*>(gq)[i] = u;
  }
}

struct BwdParams {
  const void* q;
  const void* k;
  const void* v;
  const void* gout;
  const bool* pad;
  const float* lse2;   // [B, H, T]
  const float* delta;  // [B, H, T]
  float* dqacc;        // [B, H, T, D]
  void* gk;
  void* gv;
  int H, Hkv, T, S;
  float scale, sl2;
  int causal;
};

// Warp shapes (see the header comment). Wide (D 64): 4 warps x 32 keys, two blocks per SM, the
// step's queries in two passes of 32. Split (D 128): 8 warps, pairs sharing 32 keys, each with
// half of the queries in S^T / dP^T and half of the columns of dK / dV.
enum BwdShape { kWide, kSplit };
template <int D, int kShape>
struct BwdCfg {
  static constexpr int kWarps = kShape == kWide ? 4 : 8, kThreads = 32 * kWarps;
  static constexpr int kMT = 2;  // 16-key m-tiles per warp
  static constexpr int kMinBlocks = kShape == kWide ? 2 : 1;
  static constexpr int kKW = 16 * kMT;                                        // keys per warp
  static constexpr int kBc = kKW * (kShape == kSplit ? kWarps / 2 : kWarps);  // keys per block
  static constexpr int kBr = 64;                                              // query rows per step
  static constexpr int kQS = 32;                            // queries per S^T / dP^T pass
  static constexpr int kDN = kShape == kSplit ? D / 2 : D;  // dK, dV columns per warp
  static constexpr int kRB = 2 * D;
  static constexpr int kRBS = 2 * kBr;                     // dS^T (and P^T) tiles: [kBc][kBr]
  static constexpr size_t kSmem = 2 * size_t(kBc) * kRB    // K, V
                                  + 4 * size_t(kBr) * kRB  // 2 x (Q, dO)
                                  + (kShape == kSplit ? 3 : 2) * size_t(kBc) * kRBS  // dS^T, P^T
                                  + 4 * size_t(kBr) * 4  // 2 x (lse2, delta)
                                  + 256;                 // to align the base
};

template <typename E, int D, int kShape>
__global__ void __launch_bounds__(BwdCfg<D, kShape>::kThreads, BwdCfg<D, kShape>::kMinBlocks)
    flashBwdKernel(const BwdParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // needs sm_80+ (see flashFwdKernel)
#else
  using Cfg = BwdCfg<D, kShape>;
  constexpr bool kSplitK = kShape == kSplit;
  constexpr int kBc = Cfg::kBc, kBr = Cfg::kBr, kRB = Cfg::kRB, kRBS = Cfg::kRBS;
  constexpr int kThreads = Cfg::kThreads, kWarps = Cfg::kWarps, kMT = Cfg::kMT, kQS = Cfg::kQS;
  constexpr int kKW = Cfg::kKW, kDN = Cfg::kDN;
  constexpr int kDC = D / 8, kKD = D / 16;
  constexpr int kNQ = kQS / 8;  // n-tiles of S^T (queries) per pass
  constexpr int kND = kDN / 8;  // n-tiles of dK, dV
  // dQ tiling of a step: warps 2 (32 query rows each) x kWarps / 2 (D / (kWarps / 2) columns).
  constexpr int kDQN = D / 8 / (kWarps / 2);  // n-tiles of a warp's dQ part
  static_assert(kDQN % 2 == 0 && kQS == 32 && kBc == 128, "bwd tiling");
  constexpr uint32_t kKBytes = kBc * kRB, kQBytes = kBr * kRB, kSBytes = kBc * kRBS;

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sK = (smemAddr(smem) + 255u) & ~255u;
  const uint32_t sV = sK + kKBytes;
  const uint32_t sQ = sV + kKBytes;        // 2 stages
  const uint32_t sdO = sQ + 2 * kQBytes;   // 2 stages
  const uint32_t sdS = sdO + 2 * kQBytes;  // 2 stages of [kBc][kBr]
  const uint32_t sL = sdS + 2 * kSBytes;   // 2 stages of kBr floats
  const uint32_t sDl = sL + 2 * kBr * 4;   // 2 stages of kBr floats
  const uint32_t sPt = sDl + 2 * kBr * 4;  // split: P^T, [kBc][kBr]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tq = lane & 3;
  // Split: warps 2kw and 2kw + 1 share keys (key group kw); warp & 1 picks their queries in
  // S^T / dP^T and their half of the dK / dV columns.
  const int kw = kSplitK ? warp >> 1 : warp;
  const int dcol0 = kSplitK ? (warp & 1) * kDN : 0;
  const int bkv = blockIdx.x, b = bkv / p.Hkv, hk = bkv - b * p.Hkv;
  const int group = p.H / p.Hkv;
  const int T = p.T, S = p.S, off = S - T;
  const int n0 = blockIdx.y * kBc;  // causal: the heaviest key blocks come first

  // Query blocks: all of them, or (causal) those from the first row that sees key n0.
  const int m_first = p.causal ? max(0, n0 - off) : 0;
  const int mb0 = m_first / kBr;
  const int nmb = m_first < T ? (T + kBr - 1) / kBr - mb0 : 0;
  const int iters = group * nmb;

  const E* kg = static_cast<const E*>(p.k) + (static_cast<int64_t>(bkv) * S + n0) * D;
  const E* vg = static_cast<const E*>(p.v) + (static_cast<int64_t>(bkv) * S + n0) * D;
  const E* qg = static_cast<const E*>(p.q);
  const E* og = static_cast<const E*>(p.gout);

  // Copies as in the forward: chunk lc of rows lr + i * kRS; rows past S or T zero-filled.
  constexpr int kRS = kThreads / kDC;
  const int lr = tid / kDC, lc = tid % kDC;
  const uint32_t ldOff = swz<kRB>(lr, lc);
  {
    const int64_t o = static_cast<int64_t>(lr) * D + lc * 8;
#pragma unroll
    for (int i = 0; i < kBc / kRS; ++i) {
      const bool ok = n0 + lr + i * kRS < S;
      cpAsync16(sK + ldOff + i * kRS * kRB, kg + o + i * kRS * D, ok);
      cpAsync16(sV + ldOff + i * kRS * kRB, vg + o + i * kRS * D, ok);
    }
  }
  // Steps run over (query head hk * group + gi, query block mb) with mb fastest; Step tracks one
  // without divisions.
  struct Step {
    int gi, mb;
  };
  auto advance = [&](Step st) {
    if (++st.mb == mb0 + nmb) st.mb = mb0, ++st.gi;
    return st;
  };
  // Loads step `s` into Q / dO / lse2 / delta stage `stage`.
  auto loadQ = [&](Step s, int stage) {
    const int gi = s.gi, m0 = s.mb * kBr;
    const int64_t row0 = (static_cast<int64_t>(b) * p.H + hk * group + gi) * T + m0;
    const int64_t o = (row0 + lr) * D + lc * 8;
    const E* qs = qg + o;
    const E* os = og + o;
    const int lim = T - m0 - lr;
    const uint32_t so = stage * kQBytes + ldOff;
#pragma unroll
    for (int i = 0; i < kBr / kRS; ++i) {
      cpAsync16(sQ + so + i * kRS * kRB, qs + i * kRS * D, i * kRS < lim);
      cpAsync16(sdO + so + i * kRS * kRB, os + i * kRS * D, i * kRS < lim);
    }
    if (tid < 2 * kBr) {
      const int r = tid % kBr;
      const float* src = (tid < kBr ? p.lse2 : p.delta) + row0 + r;
      cpAsync4((tid < kBr ? sL : sDl) + (stage * kBr + r) * 4, src, m0 + r < T);
    }
  };
  static_assert(2 * kBr <= kThreads, "lse2 / delta copies");
  Step cur{0, mb0};
  if (iters > 0) loadQ(cur, 0);
  cpAsyncCommit();

  // This lane's keys (rows of S^T) in m-tile mt: j0[mt] and j0[mt] + 8.
  const bool* padb = p.pad ? p.pad + static_cast<int64_t>(b) * S : nullptr;
  // Key j is visible to query i iff the key is real and unpadded and (causal) i >= j - off. As
  // a bound on the query: i >= qlo (kAll: never visible; kNone: always).
  constexpr int kAll = 1 << 30, kNone = -(1 << 30);
  int qlo0[kMT], qlo1[kMT];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
    const int j0 = n0 + kw * kKW + mt * 16 + g, j1 = j0 + 8;
    const bool kok0 = j0 < S && (padb == nullptr || padb[j0]);
    const bool kok1 = j1 < S && (padb == nullptr || padb[j1]);
    qlo0[mt] = !kok0 ? kAll : (p.causal ? j0 - off : kNone);
    qlo1[mt] = !kok1 ? kAll : (p.causal ? j1 - off : kNone);
  }
  const bool edge_mask = padb != nullptr || n0 + kBc > S;

  float dk[kMT][kND][4], dv[kMT][kND][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int n = 0; n < kND; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) dk[mt][n][e] = dv[mt][n][e] = 0.f;

  const uint32_t bA = baseA<kRB>(lane), bB = baseB<kRB>(lane);
  const uint32_t bBS = baseB<kRBS>(lane);
  const uint32_t bAS = baseA<kRBS>(lane);
  const uint32_t kWarp = sK + kw * kKW * kRB, vWarp = sV + kw * kKW * kRB;
  const int wm = warp & 1, wn = warp >> 1;  // dQ tiling: 32 query rows x kDQN * 8 columns
  const float sl2 = p.sl2;

  // dQ_partial = dS K of a finished step (rows m0.., query head h) from its dS^T stage dsS:
  // rows wm*32.. +32, columns wn*kDQN*8.. +kDQN*8, contraction over the 128 keys, A = dS from
  // dS^T (pattern B, .trans), B from K rows = keys (pattern A, .trans); added to the f32
  // accumulator with vector atomics.
  auto dqStep = [&](int h, int m0, uint32_t dsS) {
    float dq[2][kDQN][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int n = 0; n < kDQN; ++n)
        dq[mt][n][0] = dq[mt][n][1] = dq[mt][n][2] = dq[mt][n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      uint32_t a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
        ldsm4t(a[mt], dsS + kk * 16 * kRBS + (bBS ^ ((wm * 2 + mt) << 5)));
#pragma unroll
      for (int np = 0; np < kDQN / 2; ++np) {
        uint32_t kb[4];
        ldsm4t(kb, sK + kk * 16 * kRB + (bA ^ ((wn * (kDQN / 2) + np) << 5)));
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma<E>(dq[mt][2 * np], a[mt], kb[0], kb[1]);
          mma<E>(dq[mt][2 * np + 1], a[mt], kb[2], kb[3]);
        }
      }
    }
    float* dqg = p.dqacc + (static_cast<int64_t>(b) * p.H + h) * T * D;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const int row = m0 + wm * 32 + mt * 16 + g + 8 * hh;
        if (row < T) {
          float* dst = dqg + static_cast<int64_t>(row) * D + wn * (kDQN * 8) + 2 * tq;
#pragma unroll
          for (int n = 0; n < kDQN; ++n) {
#if __CUDA_ARCH__ >= 900
            atomicAdd(reinterpret_cast<float2*>(dst + 8 * n),
                      make_float2(dq[mt][n][2 * hh], dq[mt][n][2 * hh + 1]));
#else
            atomicAdd(dst + 8 * n, dq[mt][n][2 * hh]);
            atomicAdd(dst + 8 * n + 1, dq[mt][n][2 * hh + 1]);
#endif
          }
        }
      }
  };

  // One barrier per step. After the barrier of step it: Q, dO, lse2, delta of step it are in;
  // dS^T of step it - 1 (stage (it - 1) & 1) is complete, so its dQ part is done now; and every
  // warp is done with step it - 1's Q stage (refilled by the prefetch of step it + 1) and with
  // dS^T stage it & 1 (last read by the dQ of step it - 2). The extra pass it == iters only
  // finishes the dQ of the last step.
  int prev_h = 0, prev_m0 = 0;
  for (int it = 0; it <= iters; ++it) {
    cpAsyncWait<0>();
    __syncthreads();
    const Step nxt = advance(cur);
    if (it + 1 < iters) loadQ(nxt, (it + 1) & 1);
    cpAsyncCommit();
    if (it > 0) dqStep(prev_h, prev_m0, sdS + ((it - 1) & 1) * kSBytes);
    if (it == iters) break;
    const int st = it & 1;
    const int m0 = cur.mb * kBr;
    const int h = hk * group + cur.gi;
    prev_h = h;
    prev_m0 = m0;
    cur = nxt;
    const uint32_t dsS = sdS + st * kSBytes;

    // Passes over kQS queries (rows q0.. of the stage's tiles): all of the step's (wide), or
    // this warp's half (split).
    const int qbeg = kSplitK ? (warp & 1) * kQS : 0, qend = kSplitK ? qbeg + kQS : kBr;
#pragma unroll 1
    for (int q0 = qbeg; q0 < qend; q0 += kQS) {
      const uint32_t qS = sQ + st * kQBytes + q0 * kRB, oS = sdO + st * kQBytes + q0 * kRB;
      const uint32_t lS = sL + (st * kBr + q0) * 4, dlS = sDl + (st * kBr + q0) * 4;

      // S^T = K_w Q^T: rows = this warp's keys (A from K, pattern A), columns = queries (B from
      // Q rows, pattern B); each Q fragment feeds the kMT m-tiles.
      float s[kMT][kNQ][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int n = 0; n < kNQ; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kKD; ++kk) {
        uint32_t ka[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) ldsm4(ka[mt], kWarp + mt * 16 * kRB + (bA ^ (kk << 5)));
#pragma unroll
        for (int np = 0; np < kNQ / 2; ++np) {
          uint32_t qb[4];
          ldsm4(qb, qS + np * 16 * kRB + (bB ^ (kk << 5)));
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma<E>(s[mt][2 * np], ka[mt], qb[0], qb[1]);
            mma<E>(s[mt][2 * np + 1], ka[mt], qb[2], qb[3]);
          }
        }
      }
      // Masks. Element e of tile n: key (e < 2 ? j0 : j1), query m0 + q0 + 8n + 2tq + (e & 1).
      if (edge_mask || (p.causal && n0 + kBc - 1 > m0 + q0 + off)) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          // Column c = 8n + 2tq + (e & 1) is query m0 + q0 + c: visible iff c >= qlo - m0 - q0.
          const int lo0 = qlo0[mt] - m0 - q0, lo1 = qlo1[mt] - m0 - q0;
#pragma unroll
          for (int n = 0; n < kNQ; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              if (8 * n + 2 * tq + (e & 1) < (e < 2 ? lo0 : lo1)) s[mt][n][e] = -INFINITY;
        }
      }
      // P^T = 2^(s * scale * log2 e - lse2[query]).
#pragma unroll
      for (int n = 0; n < kNQ; ++n) {
        const float2 L = ldShared64f(lS + (8 * n + 2 * tq) * 4);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          s[mt][n][0] = ex2(fmaf(s[mt][n][0], sl2, -L.x));
          s[mt][n][1] = ex2(fmaf(s[mt][n][1], sl2, -L.y));
          s[mt][n][2] = ex2(fmaf(s[mt][n][2], sl2, -L.x));
          s[mt][n][3] = ex2(fmaf(s[mt][n][3], sl2, -L.y));
        }
      }
      // Split: P^T to shared memory for dV (as dS^T below, bf16/f16 like the packed fragments).
      if constexpr (kSplitK) {
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int n = 0; n < kNQ; ++n) {
            const int r = kw * kKW + mt * 16 + g;
            stShared32(sPt + swz<kRBS>(r, q0 / 8 + n) + 4 * tq, pack2<E>(s[mt][n][0], s[mt][n][1]));
            stShared32(sPt + swz<kRBS>(r + 8, q0 / 8 + n) + 4 * tq,
                       pack2<E>(s[mt][n][2], s[mt][n][3]));
          }
      }
      // dV += P^T dO: A = P^T (packed C fragments), B from dO rows = queries (pattern A, .trans).
#pragma unroll
      for (int kk = 0; kk < (kSplitK ? 0 : kQS / 16); ++kk) {
        uint32_t pa[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          pa[mt][0] = pack2<E>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          pa[mt][1] = pack2<E>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          pa[mt][2] = pack2<E>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          pa[mt][3] = pack2<E>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t ob[4];
          ldsm4t(ob, oS + kk * 16 * kRB + (bA ^ (dp << 5)));
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma<E>(dv[mt][2 * dp], pa[mt], ob[0], ob[1]);
            mma<E>(dv[mt][2 * dp + 1], pa[mt], ob[2], ob[3]);
          }
        }
      }
      // dP^T = V_w dO^T (as S^T, with V and dO), then dS^T = P^T * (dP^T - delta[query]) packed
      // to 16 bits (A fragments by 16-query chunk).
      uint32_t da[kMT][kQS / 16][4];
      {
        float dpt[kMT][4][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int n = 0; n < 4; ++n)
            dpt[mt][n][0] = dpt[mt][n][1] = dpt[mt][n][2] = dpt[mt][n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < kKD; ++kk) {
          uint32_t va[kMT][4];
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) ldsm4(va[mt], vWarp + mt * 16 * kRB + (bA ^ (kk << 5)));
#pragma unroll
          for (int np = 0; np < 2; ++np) {
            uint32_t ob[4];
            ldsm4(ob, oS + np * 16 * kRB + (bB ^ (kk << 5)));
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
              mma<E>(dpt[mt][2 * np], va[mt], ob[0], ob[1]);
              mma<E>(dpt[mt][2 * np + 1], va[mt], ob[2], ob[3]);
            }
          }
        }
#pragma unroll
        for (int n = 0; n < 4; ++n) {
          const float2 Dl = ldShared64f(dlS + (8 * n + 2 * tq) * 4);
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            const float* pr = s[mt][n];
            dpt[mt][n][0] = pr[0] * (dpt[mt][n][0] - Dl.x);
            dpt[mt][n][1] = pr[1] * (dpt[mt][n][1] - Dl.y);
            dpt[mt][n][2] = pr[2] * (dpt[mt][n][2] - Dl.x);
            dpt[mt][n][3] = pr[3] * (dpt[mt][n][3] - Dl.y);
          }
        }
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
          for (int kk = 0; kk < 2; ++kk) {
            uint32_t(&d)[4] = da[mt][kk];
            d[0] = pack2<E>(dpt[mt][2 * kk][0], dpt[mt][2 * kk][1]);
            d[1] = pack2<E>(dpt[mt][2 * kk][2], dpt[mt][2 * kk][3]);
            d[2] = pack2<E>(dpt[mt][2 * kk + 1][0], dpt[mt][2 * kk + 1][1]);
            d[3] = pack2<E>(dpt[mt][2 * kk + 1][2], dpt[mt][2 * kk + 1][3]);
            // dS^T to shared memory, [key][query]: d[e] holds key row kw*kKW + mt*16 + g +
            // 8 (e & 1), queries q0 + 8n + 2tq, +1 of n-tile n = 2kk + e / 2 of the pass.
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int n = q0 / 8 + 2 * kk + (e >> 1);
              const int r = kw * kKW + mt * 16 + g + 8 * (e & 1);
              stShared32(dsS + swz<kRBS>(r, n) + 4 * tq, d[e]);
            }
          }
      }
      // dK += dS^T Q: B from Q rows = queries (pattern A, .trans).
#pragma unroll
      for (int kk = 0; kk < (kSplitK ? 0 : kQS / 16); ++kk)
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t qb[4];
          ldsm4t(qb, qS + kk * 16 * kRB + (bA ^ (dp << 5)));
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma<E>(dk[mt][2 * dp], da[mt][kk], qb[0], qb[1]);
            mma<E>(dk[mt][2 * dp + 1], da[mt][kk], qb[2], qb[3]);
          }
        }
    }
    if constexpr (kSplitK) {
      // The pair's P^T and dS^T halves are in: dV += P^T dO and dK += dS^T Q over the step's
      // kBr queries for this warp's kDN columns, A from the [key][query] tiles (pattern A),
      // B from dO / Q rows (pattern A, .trans).
      asm volatile("bar.sync %0, 64;\n" ::"r"(1 + kw) : "memory");
      const uint32_t qS = sQ + st * kQBytes, oS = sdO + st * kQBytes;
#pragma unroll
      for (int kk = 0; kk < kBr / 16; ++kk) {
        uint32_t pa[kMT][4], ta[kMT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          ldsm4(pa[mt], sPt + (kw * kKW + mt * 16) * kRBS + (bAS ^ (kk << 5)));
          ldsm4(ta[mt], dsS + (kw * kKW + mt * 16) * kRBS + (bAS ^ (kk << 5)));
        }
#pragma unroll
        for (int dp = 0; dp < kDN / 16; ++dp) {
          uint32_t ob[4], qb[4];
          ldsm4t(ob, oS + kk * 16 * kRB + (bA ^ ((dcol0 / 16 + dp) << 5)));
          ldsm4t(qb, qS + kk * 16 * kRB + (bA ^ ((dcol0 / 16 + dp) << 5)));
#pragma unroll
          for (int mt = 0; mt < kMT; ++mt) {
            mma<E>(dv[mt][2 * dp], pa[mt], ob[0], ob[1]);
            mma<E>(dv[mt][2 * dp + 1], pa[mt], ob[2], ob[3]);
            mma<E>(dk[mt][2 * dp], ta[mt], qb[0], qb[1]);
            mma<E>(dk[mt][2 * dp + 1], ta[mt], qb[2], qb[3]);
          }
        }
      }
    }
  }

  // dK (times scale) and dV of this warp's keys.
  E* gkp = static_cast<E*>(p.gk) + static_cast<int64_t>(bkv) * S * D;
  E* gvp = static_cast<E*>(p.gv) + static_cast<int64_t>(bkv) * S * D;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      const int j = n0 + kw * kKW + mt * 16 + g + 8 * hh;
      if (j < S) {
#pragma unroll
        for (int n = 0; n < kND; ++n) {
          const int64_t o = static_cast<int64_t>(j) * D + dcol0 + 8 * n + 2 * tq;
          *reinterpret_cast<uint32_t*>(gkp + o) =
              pack2<E>(dk[mt][n][2 * hh] * p.scale, dk[mt][n][2 * hh + 1] * p.scale);
          *reinterpret_cast<uint32_t*>(gvp + o) =
              pack2<E>(dv[mt][n][2 * hh], dv[mt][n][2 * hh + 1]);
        }
      }
    }
#endif
}

// ---- host side ---------------------------------------------------------------------------------

double scaleOf(const AttentionParams& p, int64_t D) {
  return p.scale != 0.0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(D));
}

// Contiguous and 16-byte aligned (the kernels move 16-byte chunks of rows).
bool usable(const Tensor& t) {
  return t.isContiguous() && (reinterpret_cast<uintptr_t>(t.rawData()) & 15u) == 0;
}

// Raises a kernel's dynamic shared-memory limit once per device.
template <typename K>
void allowSmem(K kernel, size_t bytes, int dev, std::atomic<uint64_t>& done) {
  const uint64_t bit = uint64_t{1} << (dev & 63);
  if (done.load(std::memory_order_relaxed) & bit) return;
  LATHE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  done.fetch_or(bit, std::memory_order_relaxed);
}

template <typename E, int D>
void launchForward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* key_padding,
                   double scale, bool causal, const Tensor& out, const Tensor& lse) {
  using Cfg = FwdCfg<D>;
  const int dev = out.device().index;
  FwdParams p{};
  p.q = q.rawData();
  p.k = k.rawData();
  p.v = v.rawData();
  p.pad = key_padding ? static_cast<const bool*>(key_padding->rawData()) : nullptr;
  p.out = out.rawData();
  p.lse = static_cast<float*>(lse.rawData());
  p.H = static_cast<int>(q.size(1));
  p.Hkv = static_cast<int>(k.size(1));
  p.T = static_cast<int>(q.size(2));
  p.S = static_cast<int>(k.size(2));
  p.scale = static_cast<float>(scale);
  p.sl2 = static_cast<float>(scale * 1.4426950408889634);
  p.causal = causal ? 1 : 0;
  static std::atomic<uint64_t> done{0};
  allowSmem(flashFwdKernel<E, D>, Cfg::kSmem, dev, done);
  const dim3 grid(static_cast<unsigned>(q.size(0) * q.size(1)),
                  static_cast<unsigned>((p.T + Cfg::kBr - 1) / Cfg::kBr));
  flashFwdKernel<E, D><<<grid, Cfg::kThreads, Cfg::kSmem, streamFor(dev)>>>(p);
  LATHE_CUDA_LAUNCH_CHECK();
}

template <typename E, int D, int kShape>
void launchBackward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* key_padding,
                    double scale, bool causal, const Tensor& out, const Tensor& lse,
                    const Tensor& gout, const Tensor& gq, const Tensor& gk, const Tensor& gv) {
  using Cfg = BwdCfg<D, kShape>;
  const int dev = gq.device().index;
  cudaStream_t st = streamFor(dev);
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Hkv = k.size(1), S = k.size(2);
  const int64_t rows = B * H * T;
  // Scratch from the caching allocator: f32 dQ accumulator, lse2 and delta.
  Tensor dqacc = Tensor::empty({rows * D}, DType::f32, q.device());
  Tensor stats = Tensor::empty({2 * rows}, DType::f32, q.device());
  float* lse2 = static_cast<float*>(stats.rawData());
  float* delta = lse2 + rows;

  {
    const int64_t threads = rows * (D / 8);
    const unsigned blocks = static_cast<unsigned>((threads + 255) / 256);
    flashBwdPrepKernel<E, D><<<blocks, 256, 0, st>>>(
        static_cast<const E*>(out.rawData()), static_cast<const E*>(gout.rawData()),
        static_cast<const float*>(lse.rawData()), lse2, delta, static_cast<float*>(dqacc.rawData()),
        rows);
    LATHE_CUDA_LAUNCH_CHECK();
  }
  BwdParams p{};
  p.q = q.rawData();
  p.k = k.rawData();
  p.v = v.rawData();
  p.gout = gout.rawData();
  p.pad = key_padding ? static_cast<const bool*>(key_padding->rawData()) : nullptr;
  p.lse2 = lse2;
  p.delta = delta;
  p.dqacc = static_cast<float*>(dqacc.rawData());
  p.gk = gk.rawData();
  p.gv = gv.rawData();
  p.H = static_cast<int>(H);
  p.Hkv = static_cast<int>(Hkv);
  p.T = static_cast<int>(T);
  p.S = static_cast<int>(S);
  p.scale = static_cast<float>(scale);
  p.sl2 = static_cast<float>(scale * 1.4426950408889634);
  p.causal = causal ? 1 : 0;
  static std::atomic<uint64_t> done{0};
  allowSmem(flashBwdKernel<E, D, kShape>, Cfg::kSmem, dev, done);
  const dim3 grid(static_cast<unsigned>(B * Hkv),
                  static_cast<unsigned>((S + Cfg::kBc - 1) / Cfg::kBc));
  flashBwdKernel<E, D, kShape><<<grid, Cfg::kThreads, Cfg::kSmem, st>>>(p);
  LATHE_CUDA_LAUNCH_CHECK();

  const int64_t n8 = rows * D / 8;
  const int64_t want = (n8 + 255) / 256;
  const unsigned blocks = static_cast<unsigned>(want < 65535 * 8 ? want : 65535 * 8);
  flashDqConvertKernel<E><<<blocks, 256, 0, st>>>(static_cast<const float*>(dqacc.rawData()),
                                                  static_cast<E*>(gq.rawData()), n8,
                                                  static_cast<float>(scale));
  LATHE_CUDA_LAUNCH_CHECK();
}

// Compute capability >= 8.0 (mma.sync bf16, ldmatrix, cp.async), cached per device.
bool deviceOk(int dev) {
  static std::atomic<int> cache[64] = {};  // 0 unknown, 1 yes, 2 no
  if (dev < 0 || dev >= 64) return false;
  int v = cache[dev].load(std::memory_order_relaxed);
  if (v == 0) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      cudaGetLastError();
      major = 0;
    }
    v = major >= 8 ? 1 : 2;
    cache[dev].store(v, std::memory_order_relaxed);
  }
  return v == 1;
}

}  // namespace

bool flashAttentionSupports(const Tensor& q, const Tensor& k, const AttentionParams& p) {
  if (q.dtype() != DType::bf16 && q.dtype() != DType::f16) return false;
  if (q.dim() != 4 || k.dim() != 4 || k.dtype() != q.dtype()) return false;
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), S = k.size(2);
  if (D != 64 && D != 128) return false;
  if (!(scaleOf(p, D) > 0.0)) return false;  // the online softmax assumes a positive scale
  if (B <= 0 || H <= 0 || Hkv <= 0 || T <= 0 || S <= 0 || H % Hkv != 0) return false;
  // Grid limits (x: heads, y: 128-row blocks) and 32-bit in-head indices.
  if (B * H > INT_MAX || T >= (1 << 29) || S >= (1 << 29)) return false;
  if ((T + 127) / 128 > 65535 || (S + 127) / 128 > 65535) return false;
  return q.device().isCuda() && deviceOk(q.device().index);
}

bool flashAttentionForward(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                           const Tensor& lse) {
  if (!flashAttentionSupports(q, k, p) || lse.dtype() != DType::f32) return false;
  if (!usable(q) || !usable(k) || !usable(v) || !usable(out) || !lse.isContiguous()) return false;
  if (key_padding != nullptr && !key_padding->isContiguous()) return false;
  const int dev = out.device().index;
  setDevice(dev);
  const int64_t D = q.size(3);
  const double scale = scaleOf(p, D);
  if (q.dtype() == DType::bf16) {
    if (D == 64)
      launchForward<__nv_bfloat16, 64>(q, k, v, key_padding, scale, p.causal, out, lse);
    else
      launchForward<__nv_bfloat16, 128>(q, k, v, key_padding, scale, p.causal, out, lse);
  } else {
    if (D == 64)
      launchForward<__half, 64>(q, k, v, key_padding, scale, p.causal, out, lse);
    else
      launchForward<__half, 128>(q, k, v, key_padding, scale, p.causal, out, lse);
  }
  return true;
}

bool flashAttentionBackward(const Tensor& q, const Tensor& k, const Tensor& v,
                            const Tensor* key_padding, const AttentionParams& p, const Tensor& out,
                            const Tensor& lse, const Tensor& gout, const Tensor& gq,
                            const Tensor& gk, const Tensor& gv) {
  if (!flashAttentionSupports(q, k, p) || lse.dtype() != DType::f32) return false;
  if (out.dtype() != q.dtype() || gout.dtype() != q.dtype()) return false;
  for (const Tensor* t : {&q, &k, &v, &out, &gout, &gq, &gk, &gv})
    if (!usable(*t)) return false;
  if (!lse.isContiguous() || (key_padding != nullptr && !key_padding->isContiguous())) return false;
  const int dev = gq.device().index;
  setDevice(dev);
  const int64_t D = q.size(3);
  const double scale = scaleOf(p, D);
  // Warp shapes (see the header comment): wide at D 64, split at D 128.
  if (q.dtype() == DType::bf16) {
    if (D == 64)
      launchBackward<__nv_bfloat16, 64, kWide>(q, k, v, key_padding, scale, p.causal, out, lse,
                                               gout, gq, gk, gv);
    else
      launchBackward<__nv_bfloat16, 128, kSplit>(q, k, v, key_padding, scale, p.causal, out, lse,
                                                 gout, gq, gk, gv);
  } else {
    if (D == 64)
      launchBackward<__half, 64, kWide>(q, k, v, key_padding, scale, p.causal, out, lse, gout, gq,
                                        gk, gv);
    else
      launchBackward<__half, 128, kSplit>(q, k, v, key_padding, scale, p.causal, out, lse, gout, gq,
                                          gk, gv);
  }
  return true;
}

}  // namespace lathe::cuda
