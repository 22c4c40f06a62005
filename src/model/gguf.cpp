// GGUF reader. Layout (all little-endian):
//   u32 magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
//   kv_count x { string key, u32 value_type, value },
//   tensor_count x { string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset },
//   padding to general.alignment (default 32), then the data section; tensor offsets are
//   relative to the data section start.
// A string is { u64 length, bytes }; an array is { u32 elem_type, u64 count, elements }.
//
// Defensive parsing: every read is bounds-checked against the mapping, and every count read from
// the file is checked against the bytes left before anything is allocated for it, so a corrupt
// count can never cause a huge allocation (memory use stays proportional to the file size).
#include "model/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

namespace hs {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 16;       // arrays of arrays nest at most this deep
constexpr size_t kDefaultAlignment = 32;
// Smallest encodings, used to reject counts that cannot fit in the bytes left.
constexpr size_t kMinKvBytes = 8 + 4 + 1;           // empty key, type, 1-byte value
constexpr size_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims=0, type, offset

std::string hex32(uint32_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s = "0x";
  for (int i = 7; i >= 0; --i) s += digits[(v >> (4 * i)) & 0xf];
  return s;
}

size_t min_value_bytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
    case GgufValueType::STRING: return 8;
    case GgufValueType::ARRAY: return 4 + 8;
  }
  return 0;  // unknown: callers check validity first
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

// Sequential bounds-checked reader over the mapped file. `context` names what is being parsed
// ("header", "key 'general.name'", "tensor 'blk.0.attn_q.weight'") for error messages.
class Cursor {
 public:
  Cursor(const uint8_t* base, size_t size, const std::string& path) : base_(base), size_(size), path_(path) {}

  std::string context = "header";

  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& what) const { throw ModelFileError(path_ + ": " + context + ": " + what); }

  void need(size_t n, const char* field) const {
    if (n > left())
      fail(std::string("file truncated while reading ") + field + " at offset " + std::to_string(pos_) +
           " (needs " + std::to_string(n) + " bytes, " + std::to_string(left()) + " left)");
  }

  template <typename T>
  T read(const char* field) {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* field) {
    const uint64_t len = read<uint64_t>(field);
    if (len > left()) too_long(len, 1, field, "length", pos_ - 8);
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }

  // Checks that `count` items of at least `min_bytes` each can fit in the rest of the file.
  void check_count(uint64_t count, size_t min_bytes, const char* what) const {
    if (min_bytes != 0 && count > left() / min_bytes) too_long(count, min_bytes, what, "", pos_);
  }

  // Reports a length or count that does not fit: "absurd" when it could not fit even in the
  // whole file (corruption), "truncated" when the file merely ends too early.
  [[noreturn]] void too_long(uint64_t count, size_t min_bytes, const char* what, const char* noun, size_t at) const {
    const std::string item = std::string(what) + (*noun ? " " : "") + noun + " " + std::to_string(count);
    const std::string where = " at offset " + std::to_string(at) + " (" + std::to_string(left()) + " bytes left)";
    if (count > size_ / min_bytes) fail("absurd " + item + where);
    fail("file truncated: " + item + " does not fit" + where);
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

GgufValue read_value(Cursor& c, GgufValueType type, int depth);

template <typename Wide, typename Narrow>
std::vector<Wide> read_numbers(Cursor& c, uint64_t count) {
  std::vector<Wide> out;
  out.reserve(static_cast<size_t>(count));  // bounded by check_count
  for (uint64_t i = 0; i < count; ++i) out.push_back(static_cast<Wide>(c.read<Narrow>("array element")));
  return out;
}

GgufValue read_array(Cursor& c, int depth) {
  if (depth >= kMaxArrayDepth) c.fail("arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
  const uint32_t elem = c.read<uint32_t>("array element type");
  if (!valid_value_type(elem)) c.fail("unknown array element type " + std::to_string(elem));
  const auto et = static_cast<GgufValueType>(elem);
  const uint64_t count = c.read<uint64_t>("array length");
  c.check_count(count, min_value_bytes(et), "array length");

  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.elem_type = et;
  switch (et) {
    case GgufValueType::UINT8: v.data = read_numbers<uint64_t, uint8_t>(c, count); break;
    case GgufValueType::UINT16: v.data = read_numbers<uint64_t, uint16_t>(c, count); break;
    case GgufValueType::UINT32: v.data = read_numbers<uint64_t, uint32_t>(c, count); break;
    case GgufValueType::UINT64: v.data = read_numbers<uint64_t, uint64_t>(c, count); break;
    case GgufValueType::INT8: v.data = read_numbers<int64_t, int8_t>(c, count); break;
    case GgufValueType::INT16: v.data = read_numbers<int64_t, int16_t>(c, count); break;
    case GgufValueType::INT32: v.data = read_numbers<int64_t, int32_t>(c, count); break;
    case GgufValueType::INT64: v.data = read_numbers<int64_t, int64_t>(c, count); break;
    case GgufValueType::BOOL: {
      std::vector<int64_t> b;
      b.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) b.push_back(c.read<uint8_t>("array element") != 0 ? 1 : 0);
      v.data = std::move(b);
      break;
    }
    case GgufValueType::FLOAT32: v.data = read_numbers<double, float>(c, count); break;
    case GgufValueType::FLOAT64: v.data = read_numbers<double, double>(c, count); break;
    case GgufValueType::STRING: {
      std::vector<std::string> s;
      s.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) s.push_back(c.read_string("string"));
      v.data = std::move(s);
      break;
    }
    case GgufValueType::ARRAY: {
      std::vector<GgufValue> a;
      a.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) a.push_back(read_array(c, depth + 1));
      v.data = std::move(a);
      break;
    }
  }
  return v;
}

GgufValue read_value(Cursor& c, GgufValueType type, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufValueType::UINT8: v.data = static_cast<uint64_t>(c.read<uint8_t>("value")); break;
    case GgufValueType::UINT16: v.data = static_cast<uint64_t>(c.read<uint16_t>("value")); break;
    case GgufValueType::UINT32: v.data = static_cast<uint64_t>(c.read<uint32_t>("value")); break;
    case GgufValueType::UINT64: v.data = c.read<uint64_t>("value"); break;
    case GgufValueType::INT8: v.data = static_cast<int64_t>(c.read<int8_t>("value")); break;
    case GgufValueType::INT16: v.data = static_cast<int64_t>(c.read<int16_t>("value")); break;
    case GgufValueType::INT32: v.data = static_cast<int64_t>(c.read<int32_t>("value")); break;
    case GgufValueType::INT64: v.data = c.read<int64_t>("value"); break;
    case GgufValueType::FLOAT32: v.data = static_cast<double>(c.read<float>("value")); break;
    case GgufValueType::FLOAT64: v.data = c.read<double>("value"); break;
    case GgufValueType::BOOL: v.data = c.read<uint8_t>("value") != 0; break;
    case GgufValueType::STRING: v.data = c.read_string("string"); break;
    case GgufValueType::ARRAY: return read_array(c, depth);
  }
  return v;
}

std::string squote(const std::string& s) { return "'" + s + "'"; }

std::string describe_type(const GgufValue& v) {
  std::string s = gguf_value_type_name(v.type);
  if (v.type == GgufValueType::ARRAY) s += std::string(" of ") + gguf_value_type_name(v.elem_type);
  return s;
}

// a * b, or false when it overflows int64.
bool mul_ok(int64_t a, int64_t b, int64_t& out) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) return false;
  out = a * b;
  return true;
}

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: return "UINT8";
    case GgufValueType::INT8: return "INT8";
    case GgufValueType::UINT16: return "UINT16";
    case GgufValueType::INT16: return "INT16";
    case GgufValueType::UINT32: return "UINT32";
    case GgufValueType::INT32: return "INT32";
    case GgufValueType::FLOAT32: return "FLOAT32";
    case GgufValueType::BOOL: return "BOOL";
    case GgufValueType::STRING: return "STRING";
    case GgufValueType::ARRAY: return "ARRAY";
    case GgufValueType::UINT64: return "UINT64";
    case GgufValueType::INT64: return "INT64";
    case GgufValueType::FLOAT64: return "FLOAT64";
  }
  return "UNKNOWN";
}

size_t GgufValue::array_size() const {
  return std::visit(
      [](const auto& d) -> size_t {
        using D = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<D, std::vector<int64_t>> || std::is_same_v<D, std::vector<uint64_t>> ||
                      std::is_same_v<D, std::vector<double>> || std::is_same_v<D, std::vector<std::string>> ||
                      std::is_same_v<D, std::vector<GgufValue>>)
          return d.size();
        else
          return 0;
      },
      data);
}

int64_t GgufTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;  // the reader checked that this does not overflow
  return n;
}

// --- opening and parsing ---------------------------------------------------------------

namespace {

// Maps `path` read-only. Returns {base, size}; throws ModelFileError.
std::pair<const uint8_t*, size_t> map_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not hang; it is then rejected as not a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw ModelFileError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw ModelFileError(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ModelFileError(path + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    throw ModelFileError(path + ": header: file truncated: the file is empty");
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) throw ModelFileError(path + ": cannot mmap: " + std::strerror(e));
  return {static_cast<const uint8_t*>(p), size};
}

}  // namespace

GgufFile::~GgufFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  std::tie(f->map_, f->map_size_) = map_file(path);  // unmapped by ~GgufFile if parsing throws

  Cursor c(f->map_, f->map_size_, f->path_);

  // Header.
  if (c.read<uint32_t>("magic") != kMagic) {
    uint32_t raw;
    std::memcpy(&raw, f->map_, 4);
    c.fail("bad magic " + hex32(raw) + " (not a GGUF file; expected \"GGUF\")");
  }
  const uint32_t version = c.read<uint32_t>("version");
  if (version != 2 && version != 3) {
    if (version == 1) c.fail("GGUF version 1 is not supported (only versions 2 and 3)");
    if ((version & 0xffffu) == 0) c.fail("big-endian GGUF files are not supported (version field " + hex32(version) + ")");
    c.fail("unsupported GGUF version " + std::to_string(version) + " (only versions 2 and 3)");
  }
  f->version_ = version;
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata key/value count");
  c.check_count(n_kv, kMinKvBytes, "metadata key/value count");
  c.check_count(n_tensors, kMinTensorInfoBytes, "tensor count");

  // Metadata.
  for (uint64_t i = 0; i < n_kv; ++i) {
    c.context = "key #" + std::to_string(i);
    std::string key = c.read_string("key");
    c.context = "key " + squote(key);
    if (f->kv_.count(key)) c.fail("duplicate key");
    const uint32_t type = c.read<uint32_t>("value type");
    if (!valid_value_type(type)) c.fail("unknown value type " + std::to_string(type));
    f->kv_.emplace(std::move(key), read_value(c, static_cast<GgufValueType>(type), 0));
  }

  if (auto it = f->kv_.find("general.alignment"); it != f->kv_.end()) {
    c.context = "key 'general.alignment'";
    const GgufValue& v = it->second;
    uint64_t a = 0;
    if (const auto* u = std::get_if<uint64_t>(&v.data)) a = *u;
    else if (const auto* s = std::get_if<int64_t>(&v.data); s && *s > 0) a = static_cast<uint64_t>(*s);
    else c.fail("must be a positive integer, found " + describe_type(v));
    if (a == 0 || (a & (a - 1)) != 0 || a > (uint64_t{1} << 30))
      c.fail("alignment " + std::to_string(a) + " is not a power of two between 1 and 2^30");
    f->alignment_ = static_cast<size_t>(a);
  } else {
    f->alignment_ = kDefaultAlignment;
  }

  // Tensor infos.
  f->tensors_.reserve(static_cast<size_t>(n_tensors));  // bounded by check_count above
  for (uint64_t i = 0; i < n_tensors; ++i) {
    c.context = "tensor #" + std::to_string(i);
    GgufTensor t;
    t.name = c.read_string("tensor name");
    c.context = "tensor " + squote(t.name);
    if (f->tensor_index_.count(t.name)) c.fail("duplicate tensor name");
    const uint32_t n_dims = c.read<uint32_t>("dimension count");
    if (n_dims > kMaxDims) c.fail("has " + std::to_string(n_dims) + " dimensions (at most 4 are supported)");
    int64_t n_elems = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = c.read<uint64_t>("dimension");
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          !mul_ok(n_elems, static_cast<int64_t>(dim), n_elems))
        c.fail("absurd dimensions (element count overflows int64)");
      t.dims.push_back(static_cast<int64_t>(dim));
    }
    const uint32_t type = c.read<uint32_t>("tensor type");
    const GgmlTypeInfo* info = ggml_type_info(type);
    if (!info) c.fail("unknown tensor type " + std::to_string(type));
    t.type = static_cast<GgmlType>(type);
    t.offset = c.read<uint64_t>("data offset");

    const int64_t row = t.dims.empty() ? 1 : t.dims[0];
    if (row % info->block_elems != 0)
      c.fail("row size " + std::to_string(row) + " is not a multiple of the " + info->name + " block size " +
             std::to_string(info->block_elems));
    // Plain types take up to 8 bytes per element, so even a count below 2^63 can overflow.
    const uint64_t blocks = static_cast<uint64_t>(n_elems / info->block_elems);
    if (blocks > std::numeric_limits<uint64_t>::max() / info->block_bytes) c.fail("absurd size (byte count overflows)");
    t.nbytes = static_cast<size_t>(blocks * info->block_bytes);
    if (t.offset % f->alignment_ != 0)
      c.fail("data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
             std::to_string(f->alignment_));
    f->tensor_index_.emplace(t.name, f->tensors_.size());
    f->tensors_.push_back(std::move(t));
  }

  // Data section: starts at the next multiple of the alignment. A file without tensors may end
  // right after the tensor infos, without padding.
  if (!f->tensors_.empty()) {
    const size_t info_end = c.pos();
    const size_t data_start = (info_end + f->alignment_ - 1) / f->alignment_ * f->alignment_;
    const size_t data_size = data_start <= f->map_size_ ? f->map_size_ - data_start : 0;
    for (GgufTensor& t : f->tensors_) {
      if (data_start > f->map_size_ || t.offset > data_size || t.nbytes > data_size - t.offset)
        throw ModelFileError(f->path_ + ": tensor " + squote(t.name) + ": data out of file bounds (file truncated?): " +
                             std::to_string(t.nbytes) + " bytes at data offset " + std::to_string(t.offset) +
                             ", data section starts at " + std::to_string(data_start) + " and the file has " +
                             std::to_string(f->map_size_) + " bytes");
      t.data = f->map_ + data_start + t.offset;
    }
  }
  return f;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// --- typed getters -----------------------------------------------------------------------

namespace {

[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const GgufValue& v, const char* wanted) {
  throw ModelFileError(path + ": key " + squote(key) + " has type " + describe_type(v) + ", expected " + wanted);
}

const GgufValue& lookup(const std::map<std::string, GgufValue>& kv, const std::string& path, const std::string& key) {
  auto it = kv.find(key);
  if (it == kv.end()) throw ModelFileError(path + ": missing key " + squote(key));
  return it->second;
}

bool is_scalar(const GgufValue& v) { return v.type != GgufValueType::ARRAY; }

}  // namespace

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = lookup(kv_, path_, key);
  if (const auto* s = std::get_if<std::string>(&v.data); s && is_scalar(v)) return *s;
  wrong_type(path_, key, v, "STRING");
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = lookup(kv_, path_, key);
  if (is_scalar(v)) {
    if (const auto* i = std::get_if<int64_t>(&v.data)) return *i;
    if (const auto* u = std::get_if<uint64_t>(&v.data)) {
      if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw ModelFileError(path_ + ": key " + squote(key) + " value " + std::to_string(*u) + " does not fit in int64");
      return static_cast<int64_t>(*u);
    }
  }
  wrong_type(path_, key, v, "an integer");
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = lookup(kv_, path_, key);
  if (is_scalar(v)) {
    if (const auto* d = std::get_if<double>(&v.data)) return *d;
    if (const auto* i = std::get_if<int64_t>(&v.data)) return static_cast<double>(*i);
    if (const auto* u = std::get_if<uint64_t>(&v.data)) return static_cast<double>(*u);
  }
  wrong_type(path_, key, v, "a number");
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = lookup(kv_, path_, key);
  if (const auto* b = std::get_if<bool>(&v.data)) return *b;
  wrong_type(path_, key, v, "BOOL");
}

std::optional<std::string> GgufFile::opt_string(const std::string& key) const {
  return has(key) ? std::optional(get_string(key)) : std::nullopt;
}
std::optional<int64_t> GgufFile::opt_int(const std::string& key) const {
  return has(key) ? std::optional(get_int(key)) : std::nullopt;
}
std::optional<double> GgufFile::opt_float(const std::string& key) const {
  return has(key) ? std::optional(get_float(key)) : std::nullopt;
}
std::optional<bool> GgufFile::opt_bool(const std::string& key) const {
  return has(key) ? std::optional(get_bool(key)) : std::nullopt;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = lookup(kv_, path_, key);
  if (const auto* a = std::get_if<std::vector<std::string>>(&v.data)) return *a;
  wrong_type(path_, key, v, "ARRAY of STRING");
}

std::vector<double> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue& v = lookup(kv_, path_, key);
  if (const auto* a = std::get_if<std::vector<double>>(&v.data)) return *a;
  // Integer arrays convert too (but not BOOL ones, which are stored as int64 0/1).
  if (v.elem_type != GgufValueType::BOOL) {
    if (const auto* a = std::get_if<std::vector<int64_t>>(&v.data)) return {a->begin(), a->end()};
    if (const auto* a = std::get_if<std::vector<uint64_t>>(&v.data)) return {a->begin(), a->end()};
  }
  wrong_type(path_, key, v, "ARRAY of numbers");
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue& v = lookup(kv_, path_, key);
  if (const auto* a = std::get_if<std::vector<int64_t>>(&v.data)) return *a;
  if (const auto* a = std::get_if<std::vector<uint64_t>>(&v.data)) {
    std::vector<int64_t> out;
    out.reserve(a->size());
    for (uint64_t u : *a) {
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw ModelFileError(path_ + ": key " + squote(key) + " element " + std::to_string(u) + " does not fit in int64");
      out.push_back(static_cast<int64_t>(u));
    }
    return out;
  }
  wrong_type(path_, key, v, "ARRAY of integers");
}

}  // namespace hs
