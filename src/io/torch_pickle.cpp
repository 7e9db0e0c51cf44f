#include "io/torch_pickle.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>

#include "base/error.h"
#include "base/fileio.h"

namespace pare {
namespace {

// ---------------------------------------------------------------------------------------------
// Allowed globals.

struct StorageType {
  const char* name;  // class name in module torch
  torch::ScalarType dtype;
};

const StorageType kStorageTypes[] = {
    {"DoubleStorage", torch::kFloat64}, {"FloatStorage", torch::kFloat32},
    {"HalfStorage", torch::kFloat16},   {"BFloat16Storage", torch::kBFloat16},
    {"LongStorage", torch::kInt64},     {"IntStorage", torch::kInt32},
    {"ShortStorage", torch::kInt16},    {"CharStorage", torch::kInt8},
    {"ByteStorage", torch::kUInt8},     {"BoolStorage", torch::kBool},
};

const StorageType* find_storage_type(const std::string& module, const std::string& name) {
  if (module != "torch") return nullptr;
  for (const auto& s : kStorageTypes)
    if (name == s.name) return &s;
  return nullptr;
}

// The callables REDUCE / NEWOBJ may call (storage classes are only valid in persistent ids).
enum class Callable {
  None,
  OrderedDict,
  RebuildTensorV2,
  RebuildParameter,
  RebuildParameterState,
  Size
};

Callable find_callable(const std::string& qualified) {
  if (qualified == "collections.OrderedDict") return Callable::OrderedDict;
  if (qualified == "torch._utils._rebuild_tensor_v2") return Callable::RebuildTensorV2;
  if (qualified == "torch._utils._rebuild_parameter") return Callable::RebuildParameter;
  if (qualified == "torch._utils._rebuild_parameter_with_state")
    return Callable::RebuildParameterState;
  if (qualified == "torch.Size") return Callable::Size;
  return Callable::None;
}

// ---------------------------------------------------------------------------------------------
// Unpickled values. All live in one arena owned by the Unpickler, so containers hold plain
// pointers: self-references cost nothing and destruction never recurses.

enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Set, Dict, Global, Storage, Tensor };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Set: return "set";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

struct Obj {
  explicit Obj(Kind k) : kind(k) {}
  Kind kind;
  int64_t i = 0;                               // Bool, Int; Storage: numel; Tensor: storage offset
  double f = 0;                                // Float
  std::string s;                               // Str; Global: "module.name"; Storage: record key
  std::vector<Obj*> items;                     // Tuple, List, Set
  std::vector<std::pair<Obj*, Obj*>> entries;  // Dict, in insertion order
  bool ordered = false;                        // Dict: an OrderedDict
  const StorageType* storage_type = nullptr;   // Storage; Global naming a storage class
  Obj* storage = nullptr;                      // Tensor
  std::vector<int64_t> sizes, strides;         // Tensor
  std::optional<torch::Tensor> built;          // Tensor, once materialised
};

// Opcode names, for messages (those pare handles and those it knowingly refuses).
const char* opcode_name(uint8_t op) {
  switch (op) {
    case 0x80: return "PROTO";
    case 0x95: return "FRAME";
    case '.': return "STOP";
    case '}': return "EMPTY_DICT";
    case ']': return "EMPTY_LIST";
    case ')': return "EMPTY_TUPLE";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case '(': return "MARK";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 's': return "SETITEM";
    case 'u': return "SETITEMS";
    case 'a': return "APPEND";
    case 'e': return "APPENDS";
    case 't': return "TUPLE";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 'l': return "LIST";
    case 'd': return "DICT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'M': return "BININT2";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 'G': return "BINFLOAT";
    case 'X': return "BINUNICODE";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 0x94: return "MEMOIZE";
    case 'h': return "BINGET";
    case 'j': return "LONG_BINGET";
    case 'N': return "NONE";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 'c': return "GLOBAL";
    case 0x93: return "STACK_GLOBAL";
    case 'R': return "REDUCE";
    case 'b': return "BUILD";
    case 'Q': return "BINPERSID";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    // Refused: not part of a state_dict pickle.
    case 'P': return "PERSID";
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'F': return "FLOAT";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8e: return "BINBYTES8";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    case 'p': return "PUT";
    case 'g': return "GET";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    default: return nullptr;
  }
}

std::string hex_byte(uint8_t b) {
  const char* digits = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 15];
}

// ---------------------------------------------------------------------------------------------
// The unpickler: a stack machine over data.pkl that only builds values.

class Unpickler {
 public:
  Unpickler(std::string prefix, const std::string& bytes)
      : prefix_(std::move(prefix)), in_(bytes) {}

  // How many values the pickle created (bounds the work of walking them).
  size_t objects() const { return arena_.size(); }
  // How many tensors each storage key backs (a storage's bytes are dropped after its last one).
  const std::map<std::string, int>& tensors_per_storage() const { return tensors_per_storage_; }

  Obj* run() {
    while (true) {
      op_pos_ = pos_;
      op_ = u8();
      switch (op_) {
        case 0x80: {  // PROTO
          uint8_t v = u8();
          PARE_CHECK(v >= 2 && v <= 5, where(), "pickle protocol ", int(v),
                     " is not supported (expected 2 to 5)");
          break;
        }
        case 0x95: {  // FRAME: the frame's opcodes follow inline
          uint64_t n = uint_le(8);
          PARE_CHECK(n <= in_.size() - pos_, where(), "frame of ", n,
                     " bytes runs past the end of the ", in_.size(), "-byte pickle");
          break;
        }
        case '.':  // STOP
          return pop();
        case '}': push(make(Kind::Dict)); break;
        case ']': push(make(Kind::List)); break;
        case ')': push(make(Kind::Tuple)); break;
        case 0x8f: push(make(Kind::Set)); break;
        case 'l': push(container(Kind::List, pop_mark())); break;
        case 't': push(container(Kind::Tuple, pop_mark())); break;
        case 0x91: push(container(Kind::Set, pop_mark())); break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          size_t n = op_ - 0x84u;
          need(n);
          std::vector<Obj*> items(stack_.end() - static_cast<long>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(container(Kind::Tuple, std::move(items)));
          break;
        }
        case 'd': {
          Obj* d = make(Kind::Dict);
          set_items(d, pop_mark());
          push(d);
          break;
        }
        case '(': marks_.push_back(stack_.size()); break;
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '2': push(top()); break;
        case 's': {
          std::vector<Obj*> kv(2);
          kv[1] = pop();
          kv[0] = pop();
          set_items(top(), std::move(kv));
          break;
        }
        case 'u': {
          std::vector<Obj*> kv = pop_mark();
          set_items(top(), std::move(kv));
          break;
        }
        case 'a': {
          Obj* v = pop();
          append_items(top(), {v});
          break;
        }
        case 'e':
        case 0x90: {  // APPENDS, ADDITEMS
          std::vector<Obj*> vs = pop_mark();
          append_items(top(), std::move(vs));
          break;
        }
        case 'J': push(make_int(static_cast<int32_t>(static_cast<uint32_t>(uint_le(4))))); break;
        case 'K': push(make_int(static_cast<int64_t>(uint_le(1)))); break;
        case 'M': push(make_int(static_cast<int64_t>(uint_le(2)))); break;
        case 0x8a: push(make_int(long_int(uint_le(1)))); break;
        case 0x8b: push(make_int(long_int(uint_le(4)))); break;
        case 'G': {
          uint64_t bits = 0;
          for (char c : take(8)) bits = (bits << 8) | static_cast<unsigned char>(c);  // big-endian
          Obj* o = make(Kind::Float);
          std::memcpy(&o->f, &bits, 8);
          push(o);
          break;
        }
        case 'X': push(make_str(uint_le(4))); break;
        case 0x8c: push(make_str(uint_le(1))); break;
        case 0x8d: push(make_str(uint_le(8))); break;
        case 'q': memo_put(uint_le(1)); break;
        case 'r': memo_put(uint_le(4)); break;
        case 0x94: memo_put(memo_.size()); break;
        case 'h': push(memo_get(uint_le(1))); break;
        case 'j': push(memo_get(uint_le(4))); break;
        case 'N': push(make(Kind::None)); break;
        case 0x88:
        case 0x89: {
          Obj* o = make(Kind::Bool);
          o->i = op_ == 0x88;
          push(o);
          break;
        }
        case 'c': {
          std::string module = line(), name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Obj* name = pop();
          Obj* module = pop();
          PARE_CHECK(module->kind == Kind::Str && name->kind == Kind::Str, where(),
                     "expected module and name strings, got ", kind_name(module->kind), " and ",
                     kind_name(name->kind));
          push(global(module->s, name->s));
          break;
        }
        case 'Q': push(persistent_load(pop())); break;
        case 'R': {
          Obj* args = pop();
          Obj* callable = pop();
          push(call(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
          Obj* args = pop();
          Obj* cls = pop();
          push(new_object(cls, args));
          break;
        }
        case 0x92: {  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
          Obj* kwargs = pop();
          Obj* args = pop();
          Obj* cls = pop();
          PARE_CHECK(kwargs->kind == Kind::Dict && kwargs->entries.empty(), where(),
                     "keyword arguments are not supported");
          push(new_object(cls, args));
          break;
        }
        case 'b': {  // BUILD: obj.__setstate__(state); tolerated on OrderedDict only
          pop();     // the state (an OrderedDict's _metadata) is ignored
          Obj* obj = top();
          PARE_CHECK(obj->kind == Kind::Dict && obj->ordered, where(), "cannot set the state of a ",
                     kind_name(obj->kind), " (only an OrderedDict's attributes are tolerated)");
          break;
        }
        default: {
          const char* name = opcode_name(op_);
          throw InputError(
              concat(prefix_, name ? "unsupported" : "unknown", " pickle opcode ", hex_byte(op_),
                     name ? concat(" (", name, ")") : std::string(), " at offset ", op_pos_,
                     " (a state_dict pickle holds only containers, scalars and tensors)"));
        }
      }
    }
  }

 private:
  // "FILE: data.pkl: OPCODE at offset N: "
  std::string where() const {
    const char* name = opcode_name(op_);
    return concat(prefix_, name ? name : hex_byte(op_).c_str(), " at offset ", op_pos_, ": ");
  }

  // -- reading data.pkl, every read bounds-checked
  uint8_t u8() {
    PARE_CHECK(pos_ < in_.size(), prefix_, "truncated at offset ", pos_,
               ": the pickle ends without a STOP opcode");
    return static_cast<uint8_t>(in_[pos_++]);
  }
  std::string_view take(uint64_t n) {
    PARE_CHECK(n <= in_.size() - pos_, where(), "needs ", n, " bytes at offset ", pos_,
               " but only ", in_.size() - pos_, " remain (truncated pickle)");
    std::string_view v(in_.data() + pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return v;
  }
  uint64_t uint_le(int n) {
    std::string_view b = take(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k)
      v = (v << 8) | static_cast<unsigned char>(b[static_cast<size_t>(k)]);
    return v;
  }
  // LONG1 / LONG4 payload: little-endian two's complement of n bytes.
  int64_t long_int(uint64_t n) {
    PARE_CHECK(n <= 8, where(), "integer of ", n, " bytes does not fit in 64 bits");
    if (n == 0) return 0;
    std::string_view b = take(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = (v << 8) | static_cast<unsigned char>(b[k]);
    if (n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80)) v |= ~uint64_t(0) << (8 * n);
    return static_cast<int64_t>(v);
  }
  // GLOBAL's text arguments: one line each.
  std::string line() {
    size_t end = in_.find('\n', pos_);
    PARE_CHECK(end != std::string::npos && end - pos_ <= 256, where(),
               "expected a newline-terminated name at offset ", pos_);
    std::string s = in_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }

  // -- values
  Obj* make(Kind k) {
    arena_.push_back(std::make_unique<Obj>(k));
    return arena_.back().get();
  }
  Obj* make_int(int64_t v) {
    Obj* o = make(Kind::Int);
    o->i = v;
    return o;
  }
  Obj* make_str(uint64_t n) {
    Obj* o = make(Kind::Str);
    o->s = std::string(take(n));
    return o;
  }
  Obj* container(Kind k, std::vector<Obj*> items) {
    Obj* o = make(k);
    o->items = std::move(items);
    return o;
  }

  // -- stack, marks, memo
  void push(Obj* o) { stack_.push_back(o); }
  void need(size_t n) {
    size_t floor = marks_.empty() ? 0 : marks_.back();
    PARE_CHECK(stack_.size() >= floor + n, where(), "needs ", n, " value(s) on the stack, found ",
               stack_.size() - floor);
  }
  Obj* top() {
    need(1);
    return stack_.back();
  }
  Obj* pop() {
    need(1);
    Obj* o = stack_.back();
    stack_.pop_back();
    return o;
  }
  std::vector<Obj*> pop_mark() {
    PARE_CHECK(!marks_.empty(), where(), "no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Obj*> items(stack_.begin() + static_cast<long>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void memo_put(uint64_t i) {
    Obj* o = top();
    memo_[i] = o;
  }
  Obj* memo_get(uint64_t i) {
    auto it = memo_.find(i);
    PARE_CHECK(it != memo_.end(), where(), "memo entry ", i, " was never stored");
    return it->second;
  }

  void set_items(Obj* d, std::vector<Obj*> kv) {
    PARE_CHECK(d->kind == Kind::Dict, where(), "target is a ", kind_name(d->kind),
               ", expected a dict");
    PARE_CHECK(kv.size() % 2 == 0, where(), "odd number of keys and values (", kv.size(), ")");
    for (size_t k = 0; k < kv.size(); k += 2) d->entries.emplace_back(kv[k], kv[k + 1]);
  }
  void append_items(Obj* l, std::vector<Obj*> vs) {
    bool ok = (l->kind == Kind::List && op_ != 0x90) || (l->kind == Kind::Set && op_ == 0x90);
    PARE_CHECK(ok, where(), "target is a ", kind_name(l->kind), ", expected a ",
               op_ == 0x90 ? "set" : "list");
    l->items.insert(l->items.end(), vs.begin(), vs.end());
  }

  Obj* global(const std::string& module, const std::string& name) {
    const std::string qualified = module + "." + name;
    Obj* g = make(Kind::Global);
    g->s = qualified;
    g->storage_type = find_storage_type(module, name);
    if (g->storage_type || find_callable(qualified) != Callable::None) return g;
    if (module == "torch" && name.size() > 7 && name.compare(name.size() - 7, 7, "Storage") == 0)
      throw InputError(
          concat(prefix_, "storage type '", qualified,
                 "' is not supported (expected Double, Float, Half, BFloat16, Long, Int, "
                 "Short, Char, Byte or Bool storage)"));
    throw InputError(concat(prefix_, "refusing global '", qualified,
                            "' (only state_dict contents are allowed: tensors, storages, "
                            "OrderedDict, containers, scalars)"));
  }

  // ('storage', torch.<T>Storage, key, location, numel)
  Obj* persistent_load(Obj* pid) {
    PARE_CHECK(pid->kind == Kind::Tuple && pid->items.size() == 5 &&
                   pid->items[0]->kind == Kind::Str && pid->items[0]->s == "storage",
               where(), "expected a persistent id ('storage', type, key, location, numel)");
    Obj* type = pid->items[1];
    Obj* key = pid->items[2];
    Obj* numel = pid->items[4];
    PARE_CHECK(type->kind == Kind::Global && type->storage_type, where(),
               "persistent id names no storage class");
    PARE_CHECK(key->kind == Kind::Str && !key->s.empty(), where(),
               "storage key must be a non-empty str");
    PARE_CHECK(pid->items[3]->kind == Kind::Str, where(), "storage location must be a str");
    PARE_CHECK(numel->kind == Kind::Int && numel->i >= 0 && numel->i < (int64_t(1) << 42), where(),
               "storage '", key->s, "': numel must be an integer in [0, 2^42)");
    Obj* s = make(Kind::Storage);
    s->storage_type = type->storage_type;
    s->s = key->s;
    s->i = numel->i;
    return s;
  }

  // A tuple or list of non-negative ints below 2^40 (a size or stride).
  std::vector<int64_t> int_list(Obj* o, const char* what) {
    PARE_CHECK(o->kind == Kind::Tuple || o->kind == Kind::List, where(), what,
               " must be a tuple of ints, got a ", kind_name(o->kind));
    std::vector<int64_t> v;
    for (Obj* x : o->items) {
      PARE_CHECK(x->kind == Kind::Int && x->i >= 0 && x->i < (int64_t(1) << 40), where(), what,
                 " entries must be integers in [0, 2^40)");
      v.push_back(x->i);
    }
    return v;
  }

  Obj* call(Obj* callable, Obj* args) {
    PARE_CHECK(callable->kind == Kind::Global, where(), "cannot call a ",
               kind_name(callable->kind));
    PARE_CHECK(args->kind == Kind::Tuple, where(), "arguments must be a tuple, got a ",
               kind_name(args->kind));
    const std::vector<Obj*>& a = args->items;
    switch (find_callable(callable->s)) {
      case Callable::OrderedDict: {
        Obj* d = make(Kind::Dict);
        d->ordered = true;
        PARE_CHECK(a.size() <= 1, where(), "OrderedDict takes at most one argument");
        if (a.empty()) return d;
        PARE_CHECK(a[0]->kind == Kind::List || a[0]->kind == Kind::Tuple, where(),
                   "OrderedDict's argument must be a list of pairs");
        for (Obj* p : a[0]->items) {
          PARE_CHECK((p->kind == Kind::Tuple || p->kind == Kind::List) && p->items.size() == 2,
                     where(), "OrderedDict's argument must be a list of (key, value) pairs");
          d->entries.emplace_back(p->items[0], p->items[1]);
        }
        return d;
      }
      case Callable::RebuildTensorV2: {
        PARE_CHECK(a.size() == 6 || a.size() == 7, where(),
                   "_rebuild_tensor_v2 takes 6 or 7 arguments, got ", a.size());
        PARE_CHECK(a[0]->kind == Kind::Storage, where(),
                   "_rebuild_tensor_v2's first argument is a ", kind_name(a[0]->kind),
                   ", expected a storage");
        PARE_CHECK(a[1]->kind == Kind::Int && a[1]->i >= 0 && a[1]->i < (int64_t(1) << 42), where(),
                   "storage offset must be an integer in [0, 2^42)");
        Obj* t = make(Kind::Tensor);
        t->storage = a[0];
        t->i = a[1]->i;
        ++tensors_per_storage_[a[0]->s];
        t->sizes = int_list(a[2], "size");
        t->strides = int_list(a[3], "stride");
        PARE_CHECK(t->sizes.size() == t->strides.size(), where(), "size has ", t->sizes.size(),
                   " dimensions but stride has ", t->strides.size());
        return t;
      }
      case Callable::RebuildParameter:
      case Callable::RebuildParameterState:
        PARE_CHECK(!a.empty() && a[0]->kind == Kind::Tensor, where(), callable->s,
                   "'s first argument must be a tensor");
        return a[0];
      case Callable::Size:
        PARE_CHECK(a.size() == 1, where(), "torch.Size takes one argument");
        int_list(a[0], "torch.Size");
        return container(Kind::Tuple, a[0]->items);
      case Callable::None: break;
    }
    throw InputError(concat(where(), "'", callable->s, "' cannot be called"));
  }

  Obj* new_object(Obj* cls, Obj* args) {
    PARE_CHECK(cls->kind == Kind::Global && find_callable(cls->s) == Callable::OrderedDict &&
                   args->kind == Kind::Tuple && args->items.empty(),
               where(), "only OrderedDict() may be created with NEWOBJ");
    Obj* d = make(Kind::Dict);
    d->ordered = true;
    return d;
  }

  std::string prefix_;  // "FILE: data.pkl: "
  const std::string& in_;
  size_t pos_ = 0, op_pos_ = 0;
  uint8_t op_ = 0;
  std::vector<Obj*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Obj*> memo_;
  std::vector<std::unique_ptr<Obj>> arena_;
  std::map<std::string, int> tensors_per_storage_;
};

// ---------------------------------------------------------------------------------------------
// Zip archive access and flattening.

// The first line of a c10::Error, without its backtrace.
std::string short_message(const c10::Error& e) {
  std::string m = e.what_without_backtrace();
  size_t nl = m.find('\n');
  return nl == std::string::npos ? m : m.substr(0, nl);
}

class Archive {
 public:
  explicit Archive(std::string path) : path_(std::move(path)) {
    reader_ = wrap([&] { return std::make_unique<caffe2::serialize::PyTorchStreamReader>(path_); });
  }
  // Runs f, turning LibTorch's c10::Error into an InputError naming the file.
  template <class F>
  auto wrap(F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const c10::Error& e) {
      throw InputError(
          concat(path_, ": not a readable torch.save zip archive (", short_message(e), ")"));
    }
  }
  bool has(const std::string& name) {
    return wrap([&] { return reader_->hasRecord(name); });
  }
  // The record's bytes (a copy LibTorch allocated) and their count.
  std::tuple<at::DataPtr, size_t> record(const std::string& name) {
    PARE_CHECK(has(name), path_, ": archive has no record '", name, "'");
    return wrap([&] { return reader_->getRecord(name); });
  }
  std::string read(const std::string& name) {
    auto [ptr, size] = record(name);
    return std::string(static_cast<const char*>(ptr.get()), size);
  }

 private:
  std::string path_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader_;
};

class Flattener {
 public:
  // A value reached twice (a shared tensor) is walked twice, so crafted sharing could make the
  // walk exponential: it is capped at a multiple of the number of values the pickle holds.
  Flattener(const std::string& path, Archive& archive, TorchCheckpoint& out,
            const Unpickler& pickle)
      : path_(path),
        archive_(archive),
        out_(out),
        budget_(std::max<size_t>(1000000, 8 * pickle.objects())),
        pending_(pickle.tensors_per_storage()) {}

  void visit(Obj* o, const std::string& at, int depth) {
    PARE_CHECK(depth <= 256, path_, ": value at '", at, "' is nested more than 256 levels deep");
    PARE_CHECK(budget_-- > 0, path_,
               ": data.pkl reaches more values than it holds many times over "
               "(containers shared over and over); refusing to walk it");
    auto child = [&](const std::string& key) { return at.empty() ? key : at + "." + key; };
    switch (o->kind) {
      case Kind::Dict:
        for (const auto& [k, v] : o->entries) {
          PARE_CHECK(k->kind == Kind::Str || k->kind == Kind::Int, path_, ": dict at '", at,
                     "' has a key of type ", kind_name(k->kind), " (expected str or int)");
          visit(v, child(k->kind == Kind::Str ? k->s : std::to_string(k->i)), depth + 1);
        }
        return;
      case Kind::Tuple:
      case Kind::List:
      case Kind::Set:
        for (size_t k = 0; k < o->items.size(); ++k)
          visit(o->items[k], child(std::to_string(k)), depth + 1);
        return;
      case Kind::Tensor:
        claim(at);
        out_.tensors.emplace(at, tensor(o, at));
        return;
      case Kind::None: scalar(at, nullptr); return;
      case Kind::Bool: scalar(at, o->i != 0); return;
      case Kind::Int: scalar(at, o->i); return;
      case Kind::Float: scalar(at, o->f); return;
      case Kind::Str: scalar(at, o->s); return;
      case Kind::Global:
      case Kind::Storage: break;
    }
    throw InputError(concat(path_, ": value at '", at, "' is a bare ", kind_name(o->kind),
                            " (expected tensors, containers or scalars)"));
  }

 private:
  void claim(const std::string& at) {
    PARE_CHECK(out_.tensors.count(at) == 0 && !out_.scalars.contains(at), path_,
               ": two values have the path '", at,
               "' (keys that differ only in type, or contain '.')");
  }
  void scalar(const std::string& at, nlohmann::json v) {
    claim(at);
    out_.scalars[at] = std::move(v);
  }

  // The storage's bytes, validated against its dtype and numel, read once per key.
  const char* storage_bytes(const Obj* s, const std::string& at) {
    auto it = records_.find(s->s);
    if (it == records_.end()) {
      PARE_CHECK(archive_.has("data/" + s->s), path_, ": tensor '", at, "': storage record data/",
                 s->s, " is missing from the archive");
      it = records_.emplace(s->s, archive_.record("data/" + s->s)).first;
    }
    const char* data = static_cast<const char*>(std::get<0>(it->second).get());
    const size_t size = std::get<1>(it->second);
    const int64_t elem = static_cast<int64_t>(c10::elementSize(s->storage_type->dtype));
    PARE_CHECK(size == static_cast<uint64_t>(s->i * elem), path_, ": tensor '", at,
               "': storage record data/", s->s, " has ", size, " bytes but torch.",
               s->storage_type->name, " of ", s->i, " elements needs ", s->i * elem);
    if (s->storage_type->dtype == torch::kBool && bool_checked_.insert(s->s).second)
      for (size_t k = 0; k < size; ++k)
        PARE_CHECK(static_cast<unsigned char>(data[k]) <= 1, path_, ": tensor '", at,
                   "': storage record data/", s->s, " holds a bool byte other than 0 or 1");
    return data;
  }

  torch::Tensor tensor(Obj* t, const std::string& at) {
    if (t->built) return *t->built;
    const Obj* s = t->storage;
    auto shape = [&] {
      return concat(c10::IntArrayRef(t->sizes), " stride ", c10::IntArrayRef(t->strides));
    };
    int64_t numel = 1, last = t->i;  // last: the highest storage element the view reaches
    bool overflow = false;
    for (size_t d = 0; d < t->sizes.size(); ++d) {
      int64_t reach = 0;
      overflow |= __builtin_mul_overflow(numel, t->sizes[d], &numel);
      if (t->sizes[d] > 0)
        overflow |= __builtin_mul_overflow(t->sizes[d] - 1, t->strides[d], &reach);
      overflow |= __builtin_add_overflow(last, reach, &last);
    }
    PARE_CHECK(!overflow && numel < (int64_t(1) << 42), path_, ": tensor '", at, "': size ",
               shape(), " is too large");
    PARE_CHECK(numel == 0 || last < s->i, path_, ": tensor '", at, "': storage offset ", t->i,
               " and size ", shape(), " reach element ", last, " but storage data/", s->s, " has ",
               s->i, " elements");
    PARE_CHECK(numel <= std::max<int64_t>(s->i, int64_t(1) << 24), path_, ": tensor '", at,
               "': size ", shape(), " expands storage data/", s->s, " of ", s->i, " elements to ",
               numel, " (more than 2^24 repeated elements)");
    const char* bytes = storage_bytes(s, at);
    const auto dtype = torch::TensorOptions().dtype(s->storage_type->dtype);
    torch::Tensor out = torch::empty(t->sizes, dtype);
    if (numel > 0) {
      torch::Tensor whole = torch::from_blob(const_cast<char*>(bytes), {s->i}, dtype);
      out.copy_(whole.as_strided(t->sizes, t->strides, t->i));
    }
    t->built = out;
    if (--pending_[s->s] == 0) records_.erase(s->s);  // keeps peak memory near one copy
    return out;
  }

  const std::string& path_;
  Archive& archive_;
  TorchCheckpoint& out_;
  std::map<std::string, std::tuple<at::DataPtr, size_t>> records_;
  size_t budget_;
  std::map<std::string, int> pending_;  // tensors still to build, per storage key
  std::set<std::string> bool_checked_;  // storage keys whose bytes are known to be 0 or 1
};

// Cheap checks before LibTorch's zip reader, with clearer messages (and without the cost of a
// c10::Error, whose backtrace takes milliseconds): the legacy format (torch < 1.6 wrote a bare
// pickle stream: PROTO, then LONG1 with the magic 0x1950a86a20f9469cfc6c), a file that does not
// start like a zip archive, and one without the end-of-central-directory record (truncated).
void check_container(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PARE_CHECK(in, path, ": cannot open");
  char head[14] = {};
  in.read(head, sizeof head);
  const auto got = static_cast<size_t>(in.gcount());
  const unsigned char magic[12] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                   0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  PARE_CHECK(
      !(got == 14 && static_cast<unsigned char>(head[0]) == 0x80 &&
        std::memcmp(head + 2, magic, 12) == 0),
      path,
      ": legacy torch.save format (torch < 1.6, not a zip archive) is not supported; re-save it "
      "with torch >= 1.6 (torch.save(torch.load(f), f))");
  PARE_CHECK(
      got >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0, path,
      ": not a readable torch.save zip archive (does not start with a zip local file header)");
  // The end-of-central-directory record: 22 bytes and a comment of at most 65535 bytes.
  const long long size = file_size(path);
  const long long tail_size = std::min<long long>(size, 22 + 65535);
  std::string tail(static_cast<size_t>(tail_size), '\0');
  in.clear();
  in.seekg(size - tail_size);
  in.read(tail.data(), tail_size);
  const size_t eocd = tail.rfind("PK\x05\x06");
  PARE_CHECK(
      in && eocd != std::string::npos && eocd + 22 <= tail.size(), path,
      ": not a readable torch.save zip archive (no end-of-central-directory record: the file is "
      "truncated)");
}

}  // namespace

TorchCheckpoint read_torch_checkpoint(const std::string& path) {
  PARE_CHECK(file_exists(path), path, ": cannot open (no such file)");
  check_container(path);
  Archive archive(path);
  PARE_CHECK(!archive.has("constants.pkl"), path,
             ": is a TorchScript archive (torch.jit.save), not a torch.save checkpoint");
  if (archive.has("byteorder")) {
    const std::string order = archive.read("byteorder");
    PARE_CHECK(order == "little", path, ": byteorder '", order,
               "' is not supported (expected little-endian storages)");
  }
  const std::string pickle = archive.read("data.pkl");
  Unpickler unpickler(path + ": data.pkl: ", pickle);
  Obj* root = unpickler.run();
  TorchCheckpoint out;
  Flattener(path, archive, out, unpickler).visit(root, "", 0);
  return out;
}

}  // namespace pare
