// Row moves inside the GPU index's row storage (compaction after removals).
//
// Layout: rows live in chunks of `chunk_rows` rows, `row_bytes` bytes each (row_bytes % 16 == 0);
// chunks[c] is the device address of chunk c, so global row r sits at
// chunks[r / chunk_rows] + (r % chunk_rows) * row_bytes. Pair i copies row src[i] over row dst[i].
// Pairs must not chain (no dst is another pair's src): compaction moves live rows from the end
// into holes in front, which never overlap.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qsearch {

cudaError_t launch_copy_rows(void* const* chunks, int64_t chunk_rows, int64_t row_bytes,
                             const int64_t* src, const int64_t* dst, int64_t pairs,
                             cudaStream_t stream);

}  // namespace qsearch
