// The parts of SentencePiece's ModelProto (sentencepiece_model.proto) that headshard writes and
// reads, in protobuf wire format written by hand so that no protobuf library is needed.
//
// Field numbers: ModelProto {pieces=1, trainer_spec=2, normalizer_spec=3};
// SentencePiece {piece=1, score=2, type=3}; TrainerSpec {model_type=3, byte_fallback=35,
// unk_id=40, bos_id=41, eos_id=42, pad_id=43}; NormalizerSpec {name=1, precompiled_charsmap=2,
// add_dummy_prefix=3, remove_extra_whitespaces=4, escape_whitespaces=5}.
// Parsing skips every other field; absent fields take the proto's declared defaults.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hs {

enum class SpmPieceType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };
enum class SpmModelType : int32_t { Unigram = 1, Bpe = 2, Word = 3, Char = 4 };

struct SpmPiece {
  std::string piece;
  float score = 0.0f;
  SpmPieceType type = SpmPieceType::Normal;
};

struct SpmModel {
  std::vector<SpmPiece> pieces;
  SpmModelType model_type = SpmModelType::Unigram;
  bool byte_fallback = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string normalizer_name;
  std::string precompiled_charsmap;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
};

std::string spm_serialize(const SpmModel& m);
// Throws std::runtime_error on malformed input.
SpmModel spm_parse(std::string_view bytes);

}  // namespace hs
