// Long documents split into overlapping token windows (collection option "chunking",
// ChunkingOptions in collection/options.h).
//
// A document's text is tokenized once (content tokens with byte offsets, no EOS). Windows hold
// at most max_tokens - 1 content tokens, so that with the EOS each chunk fits max_tokens.
// A window that does not reach the end of the text is cut at the latest sentence or line end
// in its last quarter (". ", "! ", "? ", a newline, or a CJK/Arabic/Devanagari full stop); with
// none there, at the latest token boundary. Cuts and starts fall only where a new character
// begins (byte-level BPE can split a character across tokens; NFC can merge several), so every
// chunk is valid UTF-8. The next window starts `overlap` tokens before the previous cut.
//
// Each chunk's text is then embedded as a text of its own (re-tokenized, EOS appended), so a
// chunk's vector is exactly the model's embedding of the chunk text that the offsets name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "collection/options.h"
#include "common/status.h"
#include "embed/tokenizer/tokenizer.h"

namespace qsearch {

struct TextChunk {
  size_t byte_begin = 0;   // [byte_begin, byte_end) of the text
  size_t byte_end = 0;
  int32_t start = 0;       // the same range in Unicode code points
  int32_t end = 0;
  size_t first_token = 0;  // [first_token, last_token) of the tokens given
  size_t last_token = 0;
};

// Plans the chunks of `text` from its tokens (encode_with_offsets(text, false)). Always at
// least one chunk (an empty text gives one empty chunk); chunks cover the text in order.
std::vector<TextChunk> plan_chunks(std::string_view text, const std::vector<TokenSpan>& tokens,
                                   const ChunkingOptions& options);

// The code points [start, end) of UTF-8 text (clamped to the text): a chunk's text from its
// stored offsets.
std::string_view code_point_slice(std::string_view text, int32_t start, int32_t end);

}  // namespace qsearch
