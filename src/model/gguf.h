// GGUF (version 2 and 3) reader: metadata of every value type, tensor infos, alignment, mmap.
//
// The file is memory-mapped read-only; tensor data pointers stay valid while the GgufFile lives.
// Every problem in the file (truncation, bad magic, unknown type, out-of-range offsets) throws
// hs::ModelFileError whose message names the file and the key or tensor concerned.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "model/ggml_type.h"

namespace hs {

class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Scalars keep their declared type; arrays keep their element type.
struct GgufValue {
  GgufValueType type = GgufValueType::UINT8;
  GgufValueType elem_type = GgufValueType::UINT8;  // meaningful when type == ARRAY
  // Scalar payload: integers as int64/uint64, floats as double, bool, string.
  // Array payload: the vector of the matching kind (integers widened to int64 or uint64,
  // floats to double; bool arrays as int64 0/1; arrays of arrays are kept as vectors of values).
  std::variant<std::monostate, int64_t, uint64_t, double, bool, std::string,
               std::vector<int64_t>, std::vector<uint64_t>, std::vector<double>,
               std::vector<std::string>, std::vector<GgufValue>>
      data;

  size_t array_size() const;  // 0 for scalars
};

struct GgufTensor {
  std::string name;
  GgmlType type;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (row) dimension
  uint64_t offset = 0;        // relative to the start of the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t n_elements() const;
};

class GgufFile {
 public:
  // Opens and validates the whole file (header, metadata, tensor infos, that every tensor's
  // bytes lie inside the file). Throws ModelFileError.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const GgufTensor* find_tensor(const std::string& name) const;  // nullptr if absent

  // Typed getters. The "get_" ones throw ModelFileError naming the key when it is missing or
  // of an incompatible type; the "opt_" ones return nullopt when missing (but still throw on a
  // wrong type). Integer getters accept any integer type whose value fits.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // accepts float and integer types
  bool get_bool(const std::string& key) const;
  std::optional<std::string> opt_string(const std::string& key) const;
  std::optional<int64_t> opt_int(const std::string& key) const;
  std::optional<double> opt_float(const std::string& key) const;
  std::optional<bool> opt_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;  // float elements
  std::vector<int64_t> get_int_array(const std::string& key) const;   // integer elements

 private:
  GgufFile() = default;
  std::string path_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  int fd_ = -1;
};

}  // namespace hs
