// decode_envelope() decodes the usual envelope (string members of plain ASCII without escapes,
// and `data`) without building a JSON tree for the envelope itself, and everything else by
// parsing it whole. This is the second way alone, for tests that hold the two to the same
// results. Not for applications: call saga::decode_envelope().
//
// Errors and thread safety: as decode_envelope().
#pragma once

#include <cstddef>
#include <string_view>

#include "saga/envelope.hpp"

namespace saga::detail {

DecodeResult decode_envelope_document(std::string_view bytes,
                                      std::size_t max_bytes = kDefaultMaxMessageBytes);

}  // namespace saga::detail
