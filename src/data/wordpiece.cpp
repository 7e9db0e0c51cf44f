// BERT WordPiece tokenizer and vocabulary builder (see wordpiece.h). No LibTorch here: this file
// only turns text into ids and back.
#include "data/wordpiece.h"

#include <algorithm>
#include <iterator>
#include <queue>
#include <set>
#include <utility>

#include "base/error.h"
#include "base/fileio.h"
#include "data/utf8.h"

namespace pare {

namespace {

// ---------------------------------------------------------------------------------------------
// UTF-8 (as tokenizer.cpp)

// Byte length of the character whose (valid) lead byte is c.
size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

// Number of code points of valid UTF-8 `s`.
size_t utf8_count(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Unicode tables, written by a script from Python 3.11's unicodedata (Unicode 14.0):
//   kFormatRanges          category Cf
//   kPunctuationRanges     categories Pc Pd Pe Pf Pi Po Ps, code points >= 0x80
//   kNonspacingMarkRanges  category Mn
//   kLowerRuns             chr(cp).lower() for every cp where it is one other code point:
//                          cp -> cp + delta for cp = first, first + stride, ..., last
//   kDecompositions        (cp << 16) | base, sorted: every cp <= U+FFFF (not Mn, not a Hangul
//                          syllable, not a CJK compatibility ideograph) whose NFD without its Mn
//                          characters is one other code point `base` <= U+FFFF ('é' -> 'e',
//                          'ệ' -> 'e', 'ά' -> 'α', 'й' -> 'и', 'Å' (U+212B) -> 'A', '≠' -> '=')
//   kLongDecompositions    the same where the result is 2 or 3 code points or beyond U+FFFF
//                          (two-part vowel signs of Indic scripts and Balinese, musical symbols)

struct CodeRange {
  uint32_t first, last;
};
struct LongDecomposition {
  uint32_t cp = 0;
  uint32_t out[3];  // 0 after the last
};
struct LowerRun {
  uint32_t first, last;
  int32_t delta;
  uint32_t stride;
};

// clang-format off
constexpr CodeRange kFormatRanges[] = {
    {0x00AD, 0x00AD}, {0x0600, 0x0605}, {0x061C, 0x061C}, {0x06DD, 0x06DD}, {0x070F, 0x070F},
    {0x0890, 0x0891}, {0x08E2, 0x08E2}, {0x180E, 0x180E}, {0x200B, 0x200F}, {0x202A, 0x202E},
    {0x2060, 0x2064}, {0x2066, 0x206F}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0x110BD, 0x110BD},
    {0x110CD, 0x110CD}, {0x13430, 0x13438}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A},
    {0xE0001, 0xE0001}, {0xE0020, 0xE007F},
};
constexpr CodeRange kPunctuationRanges[] = {
    {0x00A1, 0x00A1}, {0x00A7, 0x00A7}, {0x00AB, 0x00AB}, {0x00B6, 0x00B7}, {0x00BB, 0x00BB},
    {0x00BF, 0x00BF}, {0x037E, 0x037E}, {0x0387, 0x0387}, {0x055A, 0x055F}, {0x0589, 0x058A},
    {0x05BE, 0x05BE}, {0x05C0, 0x05C0}, {0x05C3, 0x05C3}, {0x05C6, 0x05C6}, {0x05F3, 0x05F4},
    {0x0609, 0x060A}, {0x060C, 0x060D}, {0x061B, 0x061B}, {0x061D, 0x061F}, {0x066A, 0x066D},
    {0x06D4, 0x06D4}, {0x0700, 0x070D}, {0x07F7, 0x07F9}, {0x0830, 0x083E}, {0x085E, 0x085E},
    {0x0964, 0x0965}, {0x0970, 0x0970}, {0x09FD, 0x09FD}, {0x0A76, 0x0A76}, {0x0AF0, 0x0AF0},
    {0x0C77, 0x0C77}, {0x0C84, 0x0C84}, {0x0DF4, 0x0DF4}, {0x0E4F, 0x0E4F}, {0x0E5A, 0x0E5B},
    {0x0F04, 0x0F12}, {0x0F14, 0x0F14}, {0x0F3A, 0x0F3D}, {0x0F85, 0x0F85}, {0x0FD0, 0x0FD4},
    {0x0FD9, 0x0FDA}, {0x104A, 0x104F}, {0x10FB, 0x10FB}, {0x1360, 0x1368}, {0x1400, 0x1400},
    {0x166E, 0x166E}, {0x169B, 0x169C}, {0x16EB, 0x16ED}, {0x1735, 0x1736}, {0x17D4, 0x17D6},
    {0x17D8, 0x17DA}, {0x1800, 0x180A}, {0x1944, 0x1945}, {0x1A1E, 0x1A1F}, {0x1AA0, 0x1AA6},
    {0x1AA8, 0x1AAD}, {0x1B5A, 0x1B60}, {0x1B7D, 0x1B7E}, {0x1BFC, 0x1BFF}, {0x1C3B, 0x1C3F},
    {0x1C7E, 0x1C7F}, {0x1CC0, 0x1CC7}, {0x1CD3, 0x1CD3}, {0x2010, 0x2027}, {0x2030, 0x2043},
    {0x2045, 0x2051}, {0x2053, 0x205E}, {0x207D, 0x207E}, {0x208D, 0x208E}, {0x2308, 0x230B},
    {0x2329, 0x232A}, {0x2768, 0x2775}, {0x27C5, 0x27C6}, {0x27E6, 0x27EF}, {0x2983, 0x2998},
    {0x29D8, 0x29DB}, {0x29FC, 0x29FD}, {0x2CF9, 0x2CFC}, {0x2CFE, 0x2CFF}, {0x2D70, 0x2D70},
    {0x2E00, 0x2E2E}, {0x2E30, 0x2E4F}, {0x2E52, 0x2E5D}, {0x3001, 0x3003}, {0x3008, 0x3011},
    {0x3014, 0x301F}, {0x3030, 0x3030}, {0x303D, 0x303D}, {0x30A0, 0x30A0}, {0x30FB, 0x30FB},
    {0xA4FE, 0xA4FF}, {0xA60D, 0xA60F}, {0xA673, 0xA673}, {0xA67E, 0xA67E}, {0xA6F2, 0xA6F7},
    {0xA874, 0xA877}, {0xA8CE, 0xA8CF}, {0xA8F8, 0xA8FA}, {0xA8FC, 0xA8FC}, {0xA92E, 0xA92F},
    {0xA95F, 0xA95F}, {0xA9C1, 0xA9CD}, {0xA9DE, 0xA9DF}, {0xAA5C, 0xAA5F}, {0xAADE, 0xAADF},
    {0xAAF0, 0xAAF1}, {0xABEB, 0xABEB}, {0xFD3E, 0xFD3F}, {0xFE10, 0xFE19}, {0xFE30, 0xFE52},
    {0xFE54, 0xFE61}, {0xFE63, 0xFE63}, {0xFE68, 0xFE68}, {0xFE6A, 0xFE6B}, {0xFF01, 0xFF03},
    {0xFF05, 0xFF0A}, {0xFF0C, 0xFF0F}, {0xFF1A, 0xFF1B}, {0xFF1F, 0xFF20}, {0xFF3B, 0xFF3D},
    {0xFF3F, 0xFF3F}, {0xFF5B, 0xFF5B}, {0xFF5D, 0xFF5D}, {0xFF5F, 0xFF65}, {0x10100, 0x10102},
    {0x1039F, 0x1039F}, {0x103D0, 0x103D0}, {0x1056F, 0x1056F}, {0x10857, 0x10857},
    {0x1091F, 0x1091F}, {0x1093F, 0x1093F}, {0x10A50, 0x10A58}, {0x10A7F, 0x10A7F},
    {0x10AF0, 0x10AF6}, {0x10B39, 0x10B3F}, {0x10B99, 0x10B9C}, {0x10EAD, 0x10EAD},
    {0x10F55, 0x10F59}, {0x10F86, 0x10F89}, {0x11047, 0x1104D}, {0x110BB, 0x110BC},
    {0x110BE, 0x110C1}, {0x11140, 0x11143}, {0x11174, 0x11175}, {0x111C5, 0x111C8},
    {0x111CD, 0x111CD}, {0x111DB, 0x111DB}, {0x111DD, 0x111DF}, {0x11238, 0x1123D},
    {0x112A9, 0x112A9}, {0x1144B, 0x1144F}, {0x1145A, 0x1145B}, {0x1145D, 0x1145D},
    {0x114C6, 0x114C6}, {0x115C1, 0x115D7}, {0x11641, 0x11643}, {0x11660, 0x1166C},
    {0x116B9, 0x116B9}, {0x1173C, 0x1173E}, {0x1183B, 0x1183B}, {0x11944, 0x11946},
    {0x119E2, 0x119E2}, {0x11A3F, 0x11A46}, {0x11A9A, 0x11A9C}, {0x11A9E, 0x11AA2},
    {0x11C41, 0x11C45}, {0x11C70, 0x11C71}, {0x11EF7, 0x11EF8}, {0x11FFF, 0x11FFF},
    {0x12470, 0x12474}, {0x12FF1, 0x12FF2}, {0x16A6E, 0x16A6F}, {0x16AF5, 0x16AF5},
    {0x16B37, 0x16B3B}, {0x16B44, 0x16B44}, {0x16E97, 0x16E9A}, {0x16FE2, 0x16FE2},
    {0x1BC9F, 0x1BC9F}, {0x1DA87, 0x1DA8B}, {0x1E95E, 0x1E95F},
};
constexpr CodeRange kNonspacingMarkRanges[] = {
    {0x0300, 0x036F}, {0x0483, 0x0487}, {0x0591, 0x05BD}, {0x05BF, 0x05BF}, {0x05C1, 0x05C2},
    {0x05C4, 0x05C5}, {0x05C7, 0x05C7}, {0x0610, 0x061A}, {0x064B, 0x065F}, {0x0670, 0x0670},
    {0x06D6, 0x06DC}, {0x06DF, 0x06E4}, {0x06E7, 0x06E8}, {0x06EA, 0x06ED}, {0x0711, 0x0711},
    {0x0730, 0x074A}, {0x07A6, 0x07B0}, {0x07EB, 0x07F3}, {0x07FD, 0x07FD}, {0x0816, 0x0819},
    {0x081B, 0x0823}, {0x0825, 0x0827}, {0x0829, 0x082D}, {0x0859, 0x085B}, {0x0898, 0x089F},
    {0x08CA, 0x08E1}, {0x08E3, 0x0902}, {0x093A, 0x093A}, {0x093C, 0x093C}, {0x0941, 0x0948},
    {0x094D, 0x094D}, {0x0951, 0x0957}, {0x0962, 0x0963}, {0x0981, 0x0981}, {0x09BC, 0x09BC},
    {0x09C1, 0x09C4}, {0x09CD, 0x09CD}, {0x09E2, 0x09E3}, {0x09FE, 0x09FE}, {0x0A01, 0x0A02},
    {0x0A3C, 0x0A3C}, {0x0A41, 0x0A42}, {0x0A47, 0x0A48}, {0x0A4B, 0x0A4D}, {0x0A51, 0x0A51},
    {0x0A70, 0x0A71}, {0x0A75, 0x0A75}, {0x0A81, 0x0A82}, {0x0ABC, 0x0ABC}, {0x0AC1, 0x0AC5},
    {0x0AC7, 0x0AC8}, {0x0ACD, 0x0ACD}, {0x0AE2, 0x0AE3}, {0x0AFA, 0x0AFF}, {0x0B01, 0x0B01},
    {0x0B3C, 0x0B3C}, {0x0B3F, 0x0B3F}, {0x0B41, 0x0B44}, {0x0B4D, 0x0B4D}, {0x0B55, 0x0B56},
    {0x0B62, 0x0B63}, {0x0B82, 0x0B82}, {0x0BC0, 0x0BC0}, {0x0BCD, 0x0BCD}, {0x0C00, 0x0C00},
    {0x0C04, 0x0C04}, {0x0C3C, 0x0C3C}, {0x0C3E, 0x0C40}, {0x0C46, 0x0C48}, {0x0C4A, 0x0C4D},
    {0x0C55, 0x0C56}, {0x0C62, 0x0C63}, {0x0C81, 0x0C81}, {0x0CBC, 0x0CBC}, {0x0CBF, 0x0CBF},
    {0x0CC6, 0x0CC6}, {0x0CCC, 0x0CCD}, {0x0CE2, 0x0CE3}, {0x0D00, 0x0D01}, {0x0D3B, 0x0D3C},
    {0x0D41, 0x0D44}, {0x0D4D, 0x0D4D}, {0x0D62, 0x0D63}, {0x0D81, 0x0D81}, {0x0DCA, 0x0DCA},
    {0x0DD2, 0x0DD4}, {0x0DD6, 0x0DD6}, {0x0E31, 0x0E31}, {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E},
    {0x0EB1, 0x0EB1}, {0x0EB4, 0x0EBC}, {0x0EC8, 0x0ECD}, {0x0F18, 0x0F19}, {0x0F35, 0x0F35},
    {0x0F37, 0x0F37}, {0x0F39, 0x0F39}, {0x0F71, 0x0F7E}, {0x0F80, 0x0F84}, {0x0F86, 0x0F87},
    {0x0F8D, 0x0F97}, {0x0F99, 0x0FBC}, {0x0FC6, 0x0FC6}, {0x102D, 0x1030}, {0x1032, 0x1037},
    {0x1039, 0x103A}, {0x103D, 0x103E}, {0x1058, 0x1059}, {0x105E, 0x1060}, {0x1071, 0x1074},
    {0x1082, 0x1082}, {0x1085, 0x1086}, {0x108D, 0x108D}, {0x109D, 0x109D}, {0x135D, 0x135F},
    {0x1712, 0x1714}, {0x1732, 0x1733}, {0x1752, 0x1753}, {0x1772, 0x1773}, {0x17B4, 0x17B5},
    {0x17B7, 0x17BD}, {0x17C6, 0x17C6}, {0x17C9, 0x17D3}, {0x17DD, 0x17DD}, {0x180B, 0x180D},
    {0x180F, 0x180F}, {0x1885, 0x1886}, {0x18A9, 0x18A9}, {0x1920, 0x1922}, {0x1927, 0x1928},
    {0x1932, 0x1932}, {0x1939, 0x193B}, {0x1A17, 0x1A18}, {0x1A1B, 0x1A1B}, {0x1A56, 0x1A56},
    {0x1A58, 0x1A5E}, {0x1A60, 0x1A60}, {0x1A62, 0x1A62}, {0x1A65, 0x1A6C}, {0x1A73, 0x1A7C},
    {0x1A7F, 0x1A7F}, {0x1AB0, 0x1ABD}, {0x1ABF, 0x1ACE}, {0x1B00, 0x1B03}, {0x1B34, 0x1B34},
    {0x1B36, 0x1B3A}, {0x1B3C, 0x1B3C}, {0x1B42, 0x1B42}, {0x1B6B, 0x1B73}, {0x1B80, 0x1B81},
    {0x1BA2, 0x1BA5}, {0x1BA8, 0x1BA9}, {0x1BAB, 0x1BAD}, {0x1BE6, 0x1BE6}, {0x1BE8, 0x1BE9},
    {0x1BED, 0x1BED}, {0x1BEF, 0x1BF1}, {0x1C2C, 0x1C33}, {0x1C36, 0x1C37}, {0x1CD0, 0x1CD2},
    {0x1CD4, 0x1CE0}, {0x1CE2, 0x1CE8}, {0x1CED, 0x1CED}, {0x1CF4, 0x1CF4}, {0x1CF8, 0x1CF9},
    {0x1DC0, 0x1DFF}, {0x20D0, 0x20DC}, {0x20E1, 0x20E1}, {0x20E5, 0x20F0}, {0x2CEF, 0x2CF1},
    {0x2D7F, 0x2D7F}, {0x2DE0, 0x2DFF}, {0x302A, 0x302D}, {0x3099, 0x309A}, {0xA66F, 0xA66F},
    {0xA674, 0xA67D}, {0xA69E, 0xA69F}, {0xA6F0, 0xA6F1}, {0xA802, 0xA802}, {0xA806, 0xA806},
    {0xA80B, 0xA80B}, {0xA825, 0xA826}, {0xA82C, 0xA82C}, {0xA8C4, 0xA8C5}, {0xA8E0, 0xA8F1},
    {0xA8FF, 0xA8FF}, {0xA926, 0xA92D}, {0xA947, 0xA951}, {0xA980, 0xA982}, {0xA9B3, 0xA9B3},
    {0xA9B6, 0xA9B9}, {0xA9BC, 0xA9BD}, {0xA9E5, 0xA9E5}, {0xAA29, 0xAA2E}, {0xAA31, 0xAA32},
    {0xAA35, 0xAA36}, {0xAA43, 0xAA43}, {0xAA4C, 0xAA4C}, {0xAA7C, 0xAA7C}, {0xAAB0, 0xAAB0},
    {0xAAB2, 0xAAB4}, {0xAAB7, 0xAAB8}, {0xAABE, 0xAABF}, {0xAAC1, 0xAAC1}, {0xAAEC, 0xAAED},
    {0xAAF6, 0xAAF6}, {0xABE5, 0xABE5}, {0xABE8, 0xABE8}, {0xABED, 0xABED}, {0xFB1E, 0xFB1E},
    {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0x101FD, 0x101FD}, {0x102E0, 0x102E0}, {0x10376, 0x1037A},
    {0x10A01, 0x10A03}, {0x10A05, 0x10A06}, {0x10A0C, 0x10A0F}, {0x10A38, 0x10A3A},
    {0x10A3F, 0x10A3F}, {0x10AE5, 0x10AE6}, {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11001, 0x11001}, {0x11038, 0x11046},
    {0x11070, 0x11070}, {0x11073, 0x11074}, {0x1107F, 0x11081}, {0x110B3, 0x110B6},
    {0x110B9, 0x110BA}, {0x110C2, 0x110C2}, {0x11100, 0x11102}, {0x11127, 0x1112B},
    {0x1112D, 0x11134}, {0x11173, 0x11173}, {0x11180, 0x11181}, {0x111B6, 0x111BE},
    {0x111C9, 0x111CC}, {0x111CF, 0x111CF}, {0x1122F, 0x11231}, {0x11234, 0x11234},
    {0x11236, 0x11237}, {0x1123E, 0x1123E}, {0x112DF, 0x112DF}, {0x112E3, 0x112EA},
    {0x11300, 0x11301}, {0x1133B, 0x1133C}, {0x11340, 0x11340}, {0x11366, 0x1136C},
    {0x11370, 0x11374}, {0x11438, 0x1143F}, {0x11442, 0x11444}, {0x11446, 0x11446},
    {0x1145E, 0x1145E}, {0x114B3, 0x114B8}, {0x114BA, 0x114BA}, {0x114BF, 0x114C0},
    {0x114C2, 0x114C3}, {0x115B2, 0x115B5}, {0x115BC, 0x115BD}, {0x115BF, 0x115C0},
    {0x115DC, 0x115DD}, {0x11633, 0x1163A}, {0x1163D, 0x1163D}, {0x1163F, 0x11640},
    {0x116AB, 0x116AB}, {0x116AD, 0x116AD}, {0x116B0, 0x116B5}, {0x116B7, 0x116B7},
    {0x1171D, 0x1171F}, {0x11722, 0x11725}, {0x11727, 0x1172B}, {0x1182F, 0x11837},
    {0x11839, 0x1183A}, {0x1193B, 0x1193C}, {0x1193E, 0x1193E}, {0x11943, 0x11943},
    {0x119D4, 0x119D7}, {0x119DA, 0x119DB}, {0x119E0, 0x119E0}, {0x11A01, 0x11A0A},
    {0x11A33, 0x11A38}, {0x11A3B, 0x11A3E}, {0x11A47, 0x11A47}, {0x11A51, 0x11A56},
    {0x11A59, 0x11A5B}, {0x11A8A, 0x11A96}, {0x11A98, 0x11A99}, {0x11C30, 0x11C36},
    {0x11C38, 0x11C3D}, {0x11C3F, 0x11C3F}, {0x11C92, 0x11CA7}, {0x11CAA, 0x11CB0},
    {0x11CB2, 0x11CB3}, {0x11CB5, 0x11CB6}, {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A},
    {0x11D3C, 0x11D3D}, {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D90, 0x11D91},
    {0x11D95, 0x11D95}, {0x11D97, 0x11D97}, {0x11EF3, 0x11EF4}, {0x16AF0, 0x16AF4},
    {0x16B30, 0x16B36}, {0x16F4F, 0x16F4F}, {0x16F8F, 0x16F92}, {0x16FE4, 0x16FE4},
    {0x1BC9D, 0x1BC9E}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46}, {0x1D167, 0x1D169},
    {0x1D17B, 0x1D182}, {0x1D185, 0x1D18B}, {0x1D1AA, 0x1D1AD}, {0x1D242, 0x1D244},
    {0x1DA00, 0x1DA36}, {0x1DA3B, 0x1DA6C}, {0x1DA75, 0x1DA75}, {0x1DA84, 0x1DA84},
    {0x1DA9B, 0x1DA9F}, {0x1DAA1, 0x1DAAF}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018},
    {0x1E01B, 0x1E021}, {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E130, 0x1E136},
    {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E8D0, 0x1E8D6}, {0x1E944, 0x1E94A},
    {0xE0100, 0xE01EF},
};
constexpr LowerRun kLowerRuns[] = {
    {0x0041, 0x005A, 32, 1}, {0x00C0, 0x00D6, 32, 1}, {0x00D8, 0x00DE, 32, 1},
    {0x0100, 0x012E, 1, 2}, {0x0132, 0x0136, 1, 2}, {0x0139, 0x0147, 1, 2}, {0x014A, 0x0176, 1, 2},
    {0x0178, 0x0178, -121, 1}, {0x0179, 0x017D, 1, 2}, {0x0181, 0x0181, 210, 1},
    {0x0182, 0x0184, 1, 2}, {0x0186, 0x0186, 206, 1}, {0x0187, 0x0187, 1, 1},
    {0x0189, 0x018A, 205, 1}, {0x018B, 0x018B, 1, 1}, {0x018E, 0x018E, 79, 1},
    {0x018F, 0x018F, 202, 1}, {0x0190, 0x0190, 203, 1}, {0x0191, 0x0191, 1, 1},
    {0x0193, 0x0193, 205, 1}, {0x0194, 0x0194, 207, 1}, {0x0196, 0x0196, 211, 1},
    {0x0197, 0x0197, 209, 1}, {0x0198, 0x0198, 1, 1}, {0x019C, 0x019C, 211, 1},
    {0x019D, 0x019D, 213, 1}, {0x019F, 0x019F, 214, 1}, {0x01A0, 0x01A4, 1, 2},
    {0x01A6, 0x01A6, 218, 1}, {0x01A7, 0x01A7, 1, 1}, {0x01A9, 0x01A9, 218, 1},
    {0x01AC, 0x01AC, 1, 1}, {0x01AE, 0x01AE, 218, 1}, {0x01AF, 0x01AF, 1, 1},
    {0x01B1, 0x01B2, 217, 1}, {0x01B3, 0x01B5, 1, 2}, {0x01B7, 0x01B7, 219, 1},
    {0x01B8, 0x01B8, 1, 1}, {0x01BC, 0x01BC, 1, 1}, {0x01C4, 0x01C4, 2, 1}, {0x01C5, 0x01C5, 1, 1},
    {0x01C7, 0x01C7, 2, 1}, {0x01C8, 0x01C8, 1, 1}, {0x01CA, 0x01CA, 2, 1}, {0x01CB, 0x01DB, 1, 2},
    {0x01DE, 0x01EE, 1, 2}, {0x01F1, 0x01F1, 2, 1}, {0x01F2, 0x01F4, 1, 2},
    {0x01F6, 0x01F6, -97, 1}, {0x01F7, 0x01F7, -56, 1}, {0x01F8, 0x021E, 1, 2},
    {0x0220, 0x0220, -130, 1}, {0x0222, 0x0232, 1, 2}, {0x023A, 0x023A, 10795, 1},
    {0x023B, 0x023B, 1, 1}, {0x023D, 0x023D, -163, 1}, {0x023E, 0x023E, 10792, 1},
    {0x0241, 0x0241, 1, 1}, {0x0243, 0x0243, -195, 1}, {0x0244, 0x0244, 69, 1},
    {0x0245, 0x0245, 71, 1}, {0x0246, 0x024E, 1, 2}, {0x0370, 0x0372, 1, 2}, {0x0376, 0x0376, 1, 1},
    {0x037F, 0x037F, 116, 1}, {0x0386, 0x0386, 38, 1}, {0x0388, 0x038A, 37, 1},
    {0x038C, 0x038C, 64, 1}, {0x038E, 0x038F, 63, 1}, {0x0391, 0x03A1, 32, 1},
    {0x03A3, 0x03AB, 32, 1}, {0x03CF, 0x03CF, 8, 1}, {0x03D8, 0x03EE, 1, 2},
    {0x03F4, 0x03F4, -60, 1}, {0x03F7, 0x03F7, 1, 1}, {0x03F9, 0x03F9, -7, 1},
    {0x03FA, 0x03FA, 1, 1}, {0x03FD, 0x03FF, -130, 1}, {0x0400, 0x040F, 80, 1},
    {0x0410, 0x042F, 32, 1}, {0x0460, 0x0480, 1, 2}, {0x048A, 0x04BE, 1, 2},
    {0x04C0, 0x04C0, 15, 1}, {0x04C1, 0x04CD, 1, 2}, {0x04D0, 0x052E, 1, 2},
    {0x0531, 0x0556, 48, 1}, {0x10A0, 0x10C5, 7264, 1}, {0x10C7, 0x10C7, 7264, 1},
    {0x10CD, 0x10CD, 7264, 1}, {0x13A0, 0x13EF, 38864, 1}, {0x13F0, 0x13F5, 8, 1},
    {0x1C90, 0x1CBA, -3008, 1}, {0x1CBD, 0x1CBF, -3008, 1}, {0x1E00, 0x1E94, 1, 2},
    {0x1E9E, 0x1E9E, -7615, 1}, {0x1EA0, 0x1EFE, 1, 2}, {0x1F08, 0x1F0F, -8, 1},
    {0x1F18, 0x1F1D, -8, 1}, {0x1F28, 0x1F2F, -8, 1}, {0x1F38, 0x1F3F, -8, 1},
    {0x1F48, 0x1F4D, -8, 1}, {0x1F59, 0x1F5F, -8, 2}, {0x1F68, 0x1F6F, -8, 1},
    {0x1F88, 0x1F8F, -8, 1}, {0x1F98, 0x1F9F, -8, 1}, {0x1FA8, 0x1FAF, -8, 1},
    {0x1FB8, 0x1FB9, -8, 1}, {0x1FBA, 0x1FBB, -74, 1}, {0x1FBC, 0x1FBC, -9, 1},
    {0x1FC8, 0x1FCB, -86, 1}, {0x1FCC, 0x1FCC, -9, 1}, {0x1FD8, 0x1FD9, -8, 1},
    {0x1FDA, 0x1FDB, -100, 1}, {0x1FE8, 0x1FE9, -8, 1}, {0x1FEA, 0x1FEB, -112, 1},
    {0x1FEC, 0x1FEC, -7, 1}, {0x1FF8, 0x1FF9, -128, 1}, {0x1FFA, 0x1FFB, -126, 1},
    {0x1FFC, 0x1FFC, -9, 1}, {0x2126, 0x2126, -7517, 1}, {0x212A, 0x212A, -8383, 1},
    {0x212B, 0x212B, -8262, 1}, {0x2132, 0x2132, 28, 1}, {0x2160, 0x216F, 16, 1},
    {0x2183, 0x2183, 1, 1}, {0x24B6, 0x24CF, 26, 1}, {0x2C00, 0x2C2F, 48, 1},
    {0x2C60, 0x2C60, 1, 1}, {0x2C62, 0x2C62, -10743, 1}, {0x2C63, 0x2C63, -3814, 1},
    {0x2C64, 0x2C64, -10727, 1}, {0x2C67, 0x2C6B, 1, 2}, {0x2C6D, 0x2C6D, -10780, 1},
    {0x2C6E, 0x2C6E, -10749, 1}, {0x2C6F, 0x2C6F, -10783, 1}, {0x2C70, 0x2C70, -10782, 1},
    {0x2C72, 0x2C72, 1, 1}, {0x2C75, 0x2C75, 1, 1}, {0x2C7E, 0x2C7F, -10815, 1},
    {0x2C80, 0x2CE2, 1, 2}, {0x2CEB, 0x2CED, 1, 2}, {0x2CF2, 0x2CF2, 1, 1}, {0xA640, 0xA66C, 1, 2},
    {0xA680, 0xA69A, 1, 2}, {0xA722, 0xA72E, 1, 2}, {0xA732, 0xA76E, 1, 2}, {0xA779, 0xA77B, 1, 2},
    {0xA77D, 0xA77D, -35332, 1}, {0xA77E, 0xA786, 1, 2}, {0xA78B, 0xA78B, 1, 1},
    {0xA78D, 0xA78D, -42280, 1}, {0xA790, 0xA792, 1, 2}, {0xA796, 0xA7A8, 1, 2},
    {0xA7AA, 0xA7AA, -42308, 1}, {0xA7AB, 0xA7AB, -42319, 1}, {0xA7AC, 0xA7AC, -42315, 1},
    {0xA7AD, 0xA7AD, -42305, 1}, {0xA7AE, 0xA7AE, -42308, 1}, {0xA7B0, 0xA7B0, -42258, 1},
    {0xA7B1, 0xA7B1, -42282, 1}, {0xA7B2, 0xA7B2, -42261, 1}, {0xA7B3, 0xA7B3, 928, 1},
    {0xA7B4, 0xA7C2, 1, 2}, {0xA7C4, 0xA7C4, -48, 1}, {0xA7C5, 0xA7C5, -42307, 1},
    {0xA7C6, 0xA7C6, -35384, 1}, {0xA7C7, 0xA7C9, 1, 2}, {0xA7D0, 0xA7D0, 1, 1},
    {0xA7D6, 0xA7D8, 1, 2}, {0xA7F5, 0xA7F5, 1, 1}, {0xFF21, 0xFF3A, 32, 1},
    {0x10400, 0x10427, 40, 1}, {0x104B0, 0x104D3, 40, 1}, {0x10570, 0x1057A, 39, 1},
    {0x1057C, 0x1058A, 39, 1}, {0x1058C, 0x10592, 39, 1}, {0x10594, 0x10595, 39, 1},
    {0x10C80, 0x10CB2, 64, 1}, {0x118A0, 0x118BF, 32, 1}, {0x16E40, 0x16E5F, 32, 1},
    {0x1E900, 0x1E921, 34, 1},
};
constexpr uint32_t kDecompositions[] = {
    0x00C00041, 0x00C10041, 0x00C20041, 0x00C30041, 0x00C40041, 0x00C50041, 0x00C70043, 0x00C80045,
    0x00C90045, 0x00CA0045, 0x00CB0045, 0x00CC0049, 0x00CD0049, 0x00CE0049, 0x00CF0049, 0x00D1004E,
    0x00D2004F, 0x00D3004F, 0x00D4004F, 0x00D5004F, 0x00D6004F, 0x00D90055, 0x00DA0055, 0x00DB0055,
    0x00DC0055, 0x00DD0059, 0x00E00061, 0x00E10061, 0x00E20061, 0x00E30061, 0x00E40061, 0x00E50061,
    0x00E70063, 0x00E80065, 0x00E90065, 0x00EA0065, 0x00EB0065, 0x00EC0069, 0x00ED0069, 0x00EE0069,
    0x00EF0069, 0x00F1006E, 0x00F2006F, 0x00F3006F, 0x00F4006F, 0x00F5006F, 0x00F6006F, 0x00F90075,
    0x00FA0075, 0x00FB0075, 0x00FC0075, 0x00FD0079, 0x00FF0079, 0x01000041, 0x01010061, 0x01020041,
    0x01030061, 0x01040041, 0x01050061, 0x01060043, 0x01070063, 0x01080043, 0x01090063, 0x010A0043,
    0x010B0063, 0x010C0043, 0x010D0063, 0x010E0044, 0x010F0064, 0x01120045, 0x01130065, 0x01140045,
    0x01150065, 0x01160045, 0x01170065, 0x01180045, 0x01190065, 0x011A0045, 0x011B0065, 0x011C0047,
    0x011D0067, 0x011E0047, 0x011F0067, 0x01200047, 0x01210067, 0x01220047, 0x01230067, 0x01240048,
    0x01250068, 0x01280049, 0x01290069, 0x012A0049, 0x012B0069, 0x012C0049, 0x012D0069, 0x012E0049,
    0x012F0069, 0x01300049, 0x0134004A, 0x0135006A, 0x0136004B, 0x0137006B, 0x0139004C, 0x013A006C,
    0x013B004C, 0x013C006C, 0x013D004C, 0x013E006C, 0x0143004E, 0x0144006E, 0x0145004E, 0x0146006E,
    0x0147004E, 0x0148006E, 0x014C004F, 0x014D006F, 0x014E004F, 0x014F006F, 0x0150004F, 0x0151006F,
    0x01540052, 0x01550072, 0x01560052, 0x01570072, 0x01580052, 0x01590072, 0x015A0053, 0x015B0073,
    0x015C0053, 0x015D0073, 0x015E0053, 0x015F0073, 0x01600053, 0x01610073, 0x01620054, 0x01630074,
    0x01640054, 0x01650074, 0x01680055, 0x01690075, 0x016A0055, 0x016B0075, 0x016C0055, 0x016D0075,
    0x016E0055, 0x016F0075, 0x01700055, 0x01710075, 0x01720055, 0x01730075, 0x01740057, 0x01750077,
    0x01760059, 0x01770079, 0x01780059, 0x0179005A, 0x017A007A, 0x017B005A, 0x017C007A, 0x017D005A,
    0x017E007A, 0x01A0004F, 0x01A1006F, 0x01AF0055, 0x01B00075, 0x01CD0041, 0x01CE0061, 0x01CF0049,
    0x01D00069, 0x01D1004F, 0x01D2006F, 0x01D30055, 0x01D40075, 0x01D50055, 0x01D60075, 0x01D70055,
    0x01D80075, 0x01D90055, 0x01DA0075, 0x01DB0055, 0x01DC0075, 0x01DE0041, 0x01DF0061, 0x01E00041,
    0x01E10061, 0x01E200C6, 0x01E300E6, 0x01E60047, 0x01E70067, 0x01E8004B, 0x01E9006B, 0x01EA004F,
    0x01EB006F, 0x01EC004F, 0x01ED006F, 0x01EE01B7, 0x01EF0292, 0x01F0006A, 0x01F40047, 0x01F50067,
    0x01F8004E, 0x01F9006E, 0x01FA0041, 0x01FB0061, 0x01FC00C6, 0x01FD00E6, 0x01FE00D8, 0x01FF00F8,
    0x02000041, 0x02010061, 0x02020041, 0x02030061, 0x02040045, 0x02050065, 0x02060045, 0x02070065,
    0x02080049, 0x02090069, 0x020A0049, 0x020B0069, 0x020C004F, 0x020D006F, 0x020E004F, 0x020F006F,
    0x02100052, 0x02110072, 0x02120052, 0x02130072, 0x02140055, 0x02150075, 0x02160055, 0x02170075,
    0x02180053, 0x02190073, 0x021A0054, 0x021B0074, 0x021E0048, 0x021F0068, 0x02260041, 0x02270061,
    0x02280045, 0x02290065, 0x022A004F, 0x022B006F, 0x022C004F, 0x022D006F, 0x022E004F, 0x022F006F,
    0x0230004F, 0x0231006F, 0x02320059, 0x02330079, 0x037402B9, 0x037E003B, 0x038500A8, 0x03860391,
    0x038700B7, 0x03880395, 0x03890397, 0x038A0399, 0x038C039F, 0x038E03A5, 0x038F03A9, 0x039003B9,
    0x03AA0399, 0x03AB03A5, 0x03AC03B1, 0x03AD03B5, 0x03AE03B7, 0x03AF03B9, 0x03B003C5, 0x03CA03B9,
    0x03CB03C5, 0x03CC03BF, 0x03CD03C5, 0x03CE03C9, 0x03D303D2, 0x03D403D2, 0x04000415, 0x04010415,
    0x04030413, 0x04070406, 0x040C041A, 0x040D0418, 0x040E0423, 0x04190418, 0x04390438, 0x04500435,
    0x04510435, 0x04530433, 0x04570456, 0x045C043A, 0x045D0438, 0x045E0443, 0x04760474, 0x04770475,
    0x04C10416, 0x04C20436, 0x04D00410, 0x04D10430, 0x04D20410, 0x04D30430, 0x04D60415, 0x04D70435,
    0x04DA04D8, 0x04DB04D9, 0x04DC0416, 0x04DD0436, 0x04DE0417, 0x04DF0437, 0x04E20418, 0x04E30438,
    0x04E40418, 0x04E50438, 0x04E6041E, 0x04E7043E, 0x04EA04E8, 0x04EB04E9, 0x04EC042D, 0x04ED044D,
    0x04EE0423, 0x04EF0443, 0x04F00423, 0x04F10443, 0x04F20423, 0x04F30443, 0x04F40427, 0x04F50447,
    0x04F8042B, 0x04F9044B, 0x06220627, 0x06230627, 0x06240648, 0x06250627, 0x0626064A, 0x06C006D5,
    0x06C206C1, 0x06D306D2, 0x09290928, 0x09310930, 0x09340933, 0x09580915, 0x09590916, 0x095A0917,
    0x095B091C, 0x095C0921, 0x095D0922, 0x095E092B, 0x095F092F, 0x09DC09A1, 0x09DD09A2, 0x09DF09AF,
    0x0A330A32, 0x0A360A38, 0x0A590A16, 0x0A5A0A17, 0x0A5B0A1C, 0x0A5E0A2B, 0x0B480B47, 0x0B5C0B21,
    0x0B5D0B22, 0x0CC00CD5, 0x0CC70CD5, 0x0CC80CD6, 0x0CCA0CC2, 0x0DDA0DD9, 0x0F430F42, 0x0F4D0F4C,
    0x0F520F51, 0x0F570F56, 0x0F5C0F5B, 0x0F690F40, 0x10261025, 0x1B3B1B35, 0x1B3D1B35, 0x1B431B35,
    0x1E000041, 0x1E010061, 0x1E020042, 0x1E030062, 0x1E040042, 0x1E050062, 0x1E060042, 0x1E070062,
    0x1E080043, 0x1E090063, 0x1E0A0044, 0x1E0B0064, 0x1E0C0044, 0x1E0D0064, 0x1E0E0044, 0x1E0F0064,
    0x1E100044, 0x1E110064, 0x1E120044, 0x1E130064, 0x1E140045, 0x1E150065, 0x1E160045, 0x1E170065,
    0x1E180045, 0x1E190065, 0x1E1A0045, 0x1E1B0065, 0x1E1C0045, 0x1E1D0065, 0x1E1E0046, 0x1E1F0066,
    0x1E200047, 0x1E210067, 0x1E220048, 0x1E230068, 0x1E240048, 0x1E250068, 0x1E260048, 0x1E270068,
    0x1E280048, 0x1E290068, 0x1E2A0048, 0x1E2B0068, 0x1E2C0049, 0x1E2D0069, 0x1E2E0049, 0x1E2F0069,
    0x1E30004B, 0x1E31006B, 0x1E32004B, 0x1E33006B, 0x1E34004B, 0x1E35006B, 0x1E36004C, 0x1E37006C,
    0x1E38004C, 0x1E39006C, 0x1E3A004C, 0x1E3B006C, 0x1E3C004C, 0x1E3D006C, 0x1E3E004D, 0x1E3F006D,
    0x1E40004D, 0x1E41006D, 0x1E42004D, 0x1E43006D, 0x1E44004E, 0x1E45006E, 0x1E46004E, 0x1E47006E,
    0x1E48004E, 0x1E49006E, 0x1E4A004E, 0x1E4B006E, 0x1E4C004F, 0x1E4D006F, 0x1E4E004F, 0x1E4F006F,
    0x1E50004F, 0x1E51006F, 0x1E52004F, 0x1E53006F, 0x1E540050, 0x1E550070, 0x1E560050, 0x1E570070,
    0x1E580052, 0x1E590072, 0x1E5A0052, 0x1E5B0072, 0x1E5C0052, 0x1E5D0072, 0x1E5E0052, 0x1E5F0072,
    0x1E600053, 0x1E610073, 0x1E620053, 0x1E630073, 0x1E640053, 0x1E650073, 0x1E660053, 0x1E670073,
    0x1E680053, 0x1E690073, 0x1E6A0054, 0x1E6B0074, 0x1E6C0054, 0x1E6D0074, 0x1E6E0054, 0x1E6F0074,
    0x1E700054, 0x1E710074, 0x1E720055, 0x1E730075, 0x1E740055, 0x1E750075, 0x1E760055, 0x1E770075,
    0x1E780055, 0x1E790075, 0x1E7A0055, 0x1E7B0075, 0x1E7C0056, 0x1E7D0076, 0x1E7E0056, 0x1E7F0076,
    0x1E800057, 0x1E810077, 0x1E820057, 0x1E830077, 0x1E840057, 0x1E850077, 0x1E860057, 0x1E870077,
    0x1E880057, 0x1E890077, 0x1E8A0058, 0x1E8B0078, 0x1E8C0058, 0x1E8D0078, 0x1E8E0059, 0x1E8F0079,
    0x1E90005A, 0x1E91007A, 0x1E92005A, 0x1E93007A, 0x1E94005A, 0x1E95007A, 0x1E960068, 0x1E970074,
    0x1E980077, 0x1E990079, 0x1E9B017F, 0x1EA00041, 0x1EA10061, 0x1EA20041, 0x1EA30061, 0x1EA40041,
    0x1EA50061, 0x1EA60041, 0x1EA70061, 0x1EA80041, 0x1EA90061, 0x1EAA0041, 0x1EAB0061, 0x1EAC0041,
    0x1EAD0061, 0x1EAE0041, 0x1EAF0061, 0x1EB00041, 0x1EB10061, 0x1EB20041, 0x1EB30061, 0x1EB40041,
    0x1EB50061, 0x1EB60041, 0x1EB70061, 0x1EB80045, 0x1EB90065, 0x1EBA0045, 0x1EBB0065, 0x1EBC0045,
    0x1EBD0065, 0x1EBE0045, 0x1EBF0065, 0x1EC00045, 0x1EC10065, 0x1EC20045, 0x1EC30065, 0x1EC40045,
    0x1EC50065, 0x1EC60045, 0x1EC70065, 0x1EC80049, 0x1EC90069, 0x1ECA0049, 0x1ECB0069, 0x1ECC004F,
    0x1ECD006F, 0x1ECE004F, 0x1ECF006F, 0x1ED0004F, 0x1ED1006F, 0x1ED2004F, 0x1ED3006F, 0x1ED4004F,
    0x1ED5006F, 0x1ED6004F, 0x1ED7006F, 0x1ED8004F, 0x1ED9006F, 0x1EDA004F, 0x1EDB006F, 0x1EDC004F,
    0x1EDD006F, 0x1EDE004F, 0x1EDF006F, 0x1EE0004F, 0x1EE1006F, 0x1EE2004F, 0x1EE3006F, 0x1EE40055,
    0x1EE50075, 0x1EE60055, 0x1EE70075, 0x1EE80055, 0x1EE90075, 0x1EEA0055, 0x1EEB0075, 0x1EEC0055,
    0x1EED0075, 0x1EEE0055, 0x1EEF0075, 0x1EF00055, 0x1EF10075, 0x1EF20059, 0x1EF30079, 0x1EF40059,
    0x1EF50079, 0x1EF60059, 0x1EF70079, 0x1EF80059, 0x1EF90079, 0x1F0003B1, 0x1F0103B1, 0x1F0203B1,
    0x1F0303B1, 0x1F0403B1, 0x1F0503B1, 0x1F0603B1, 0x1F0703B1, 0x1F080391, 0x1F090391, 0x1F0A0391,
    0x1F0B0391, 0x1F0C0391, 0x1F0D0391, 0x1F0E0391, 0x1F0F0391, 0x1F1003B5, 0x1F1103B5, 0x1F1203B5,
    0x1F1303B5, 0x1F1403B5, 0x1F1503B5, 0x1F180395, 0x1F190395, 0x1F1A0395, 0x1F1B0395, 0x1F1C0395,
    0x1F1D0395, 0x1F2003B7, 0x1F2103B7, 0x1F2203B7, 0x1F2303B7, 0x1F2403B7, 0x1F2503B7, 0x1F2603B7,
    0x1F2703B7, 0x1F280397, 0x1F290397, 0x1F2A0397, 0x1F2B0397, 0x1F2C0397, 0x1F2D0397, 0x1F2E0397,
    0x1F2F0397, 0x1F3003B9, 0x1F3103B9, 0x1F3203B9, 0x1F3303B9, 0x1F3403B9, 0x1F3503B9, 0x1F3603B9,
    0x1F3703B9, 0x1F380399, 0x1F390399, 0x1F3A0399, 0x1F3B0399, 0x1F3C0399, 0x1F3D0399, 0x1F3E0399,
    0x1F3F0399, 0x1F4003BF, 0x1F4103BF, 0x1F4203BF, 0x1F4303BF, 0x1F4403BF, 0x1F4503BF, 0x1F48039F,
    0x1F49039F, 0x1F4A039F, 0x1F4B039F, 0x1F4C039F, 0x1F4D039F, 0x1F5003C5, 0x1F5103C5, 0x1F5203C5,
    0x1F5303C5, 0x1F5403C5, 0x1F5503C5, 0x1F5603C5, 0x1F5703C5, 0x1F5903A5, 0x1F5B03A5, 0x1F5D03A5,
    0x1F5F03A5, 0x1F6003C9, 0x1F6103C9, 0x1F6203C9, 0x1F6303C9, 0x1F6403C9, 0x1F6503C9, 0x1F6603C9,
    0x1F6703C9, 0x1F6803A9, 0x1F6903A9, 0x1F6A03A9, 0x1F6B03A9, 0x1F6C03A9, 0x1F6D03A9, 0x1F6E03A9,
    0x1F6F03A9, 0x1F7003B1, 0x1F7103B1, 0x1F7203B5, 0x1F7303B5, 0x1F7403B7, 0x1F7503B7, 0x1F7603B9,
    0x1F7703B9, 0x1F7803BF, 0x1F7903BF, 0x1F7A03C5, 0x1F7B03C5, 0x1F7C03C9, 0x1F7D03C9, 0x1F8003B1,
    0x1F8103B1, 0x1F8203B1, 0x1F8303B1, 0x1F8403B1, 0x1F8503B1, 0x1F8603B1, 0x1F8703B1, 0x1F880391,
    0x1F890391, 0x1F8A0391, 0x1F8B0391, 0x1F8C0391, 0x1F8D0391, 0x1F8E0391, 0x1F8F0391, 0x1F9003B7,
    0x1F9103B7, 0x1F9203B7, 0x1F9303B7, 0x1F9403B7, 0x1F9503B7, 0x1F9603B7, 0x1F9703B7, 0x1F980397,
    0x1F990397, 0x1F9A0397, 0x1F9B0397, 0x1F9C0397, 0x1F9D0397, 0x1F9E0397, 0x1F9F0397, 0x1FA003C9,
    0x1FA103C9, 0x1FA203C9, 0x1FA303C9, 0x1FA403C9, 0x1FA503C9, 0x1FA603C9, 0x1FA703C9, 0x1FA803A9,
    0x1FA903A9, 0x1FAA03A9, 0x1FAB03A9, 0x1FAC03A9, 0x1FAD03A9, 0x1FAE03A9, 0x1FAF03A9, 0x1FB003B1,
    0x1FB103B1, 0x1FB203B1, 0x1FB303B1, 0x1FB403B1, 0x1FB603B1, 0x1FB703B1, 0x1FB80391, 0x1FB90391,
    0x1FBA0391, 0x1FBB0391, 0x1FBC0391, 0x1FBE03B9, 0x1FC100A8, 0x1FC203B7, 0x1FC303B7, 0x1FC403B7,
    0x1FC603B7, 0x1FC703B7, 0x1FC80395, 0x1FC90395, 0x1FCA0397, 0x1FCB0397, 0x1FCC0397, 0x1FCD1FBF,
    0x1FCE1FBF, 0x1FCF1FBF, 0x1FD003B9, 0x1FD103B9, 0x1FD203B9, 0x1FD303B9, 0x1FD603B9, 0x1FD703B9,
    0x1FD80399, 0x1FD90399, 0x1FDA0399, 0x1FDB0399, 0x1FDD1FFE, 0x1FDE1FFE, 0x1FDF1FFE, 0x1FE003C5,
    0x1FE103C5, 0x1FE203C5, 0x1FE303C5, 0x1FE403C1, 0x1FE503C1, 0x1FE603C5, 0x1FE703C5, 0x1FE803A5,
    0x1FE903A5, 0x1FEA03A5, 0x1FEB03A5, 0x1FEC03A1, 0x1FED00A8, 0x1FEE00A8, 0x1FEF0060, 0x1FF203C9,
    0x1FF303C9, 0x1FF403C9, 0x1FF603C9, 0x1FF703C9, 0x1FF8039F, 0x1FF9039F, 0x1FFA03A9, 0x1FFB03A9,
    0x1FFC03A9, 0x1FFD00B4, 0x20002002, 0x20012003, 0x212603A9, 0x212A004B, 0x212B0041, 0x219A2190,
    0x219B2192, 0x21AE2194, 0x21CD21D0, 0x21CE21D4, 0x21CF21D2, 0x22042203, 0x22092208, 0x220C220B,
    0x22242223, 0x22262225, 0x2241223C, 0x22442243, 0x22472245, 0x22492248, 0x2260003D, 0x22622261,
    0x226D224D, 0x226E003C, 0x226F003E, 0x22702264, 0x22712265, 0x22742272, 0x22752273, 0x22782276,
    0x22792277, 0x2280227A, 0x2281227B, 0x22842282, 0x22852283, 0x22882286, 0x22892287, 0x22AC22A2,
    0x22AD22A8, 0x22AE22A9, 0x22AF22AB, 0x22E0227C, 0x22E1227D, 0x22E22291, 0x22E32292, 0x22EA22B2,
    0x22EB22B3, 0x22EC22B4, 0x22ED22B5, 0x23293008, 0x232A3009, 0x2ADC2ADD, 0x304C304B, 0x304E304D,
    0x3050304F, 0x30523051, 0x30543053, 0x30563055, 0x30583057, 0x305A3059, 0x305C305B, 0x305E305D,
    0x3060305F, 0x30623061, 0x30653064, 0x30673066, 0x30693068, 0x3070306F, 0x3071306F, 0x30733072,
    0x30743072, 0x30763075, 0x30773075, 0x30793078, 0x307A3078, 0x307C307B, 0x307D307B, 0x30943046,
    0x309E309D, 0x30AC30AB, 0x30AE30AD, 0x30B030AF, 0x30B230B1, 0x30B430B3, 0x30B630B5, 0x30B830B7,
    0x30BA30B9, 0x30BC30BB, 0x30BE30BD, 0x30C030BF, 0x30C230C1, 0x30C530C4, 0x30C730C6, 0x30C930C8,
    0x30D030CF, 0x30D130CF, 0x30D330D2, 0x30D430D2, 0x30D630D5, 0x30D730D5, 0x30D930D8, 0x30DA30D8,
    0x30DC30DB, 0x30DD30DB, 0x30F430A6, 0x30F730EF, 0x30F830F0, 0x30F930F1, 0x30FA30F2, 0x30FE30FD,
    0xFB1D05D9, 0xFB1F05F2, 0xFB2A05E9, 0xFB2B05E9, 0xFB2C05E9, 0xFB2D05E9, 0xFB2E05D0, 0xFB2F05D0,
    0xFB3005D0, 0xFB3105D1, 0xFB3205D2, 0xFB3305D3, 0xFB3405D4, 0xFB3505D5, 0xFB3605D6, 0xFB3805D8,
    0xFB3905D9, 0xFB3A05DA, 0xFB3B05DB, 0xFB3C05DC, 0xFB3E05DE, 0xFB4005E0, 0xFB4105E1, 0xFB4305E3,
    0xFB4405E4, 0xFB4605E6, 0xFB4705E7, 0xFB4805E8, 0xFB4905E9, 0xFB4A05EA, 0xFB4B05D5, 0xFB4C05D1,
    0xFB4D05DB, 0xFB4E05E4,
};
constexpr LongDecomposition kLongDecompositions[] = {
    {0x09CB, {0x09C7, 0x09BE, 0x0000}}, {0x09CC, {0x09C7, 0x09D7, 0x0000}},
    {0x0B4B, {0x0B47, 0x0B3E, 0x0000}}, {0x0B4C, {0x0B47, 0x0B57, 0x0000}},
    {0x0B94, {0x0B92, 0x0BD7, 0x0000}}, {0x0BCA, {0x0BC6, 0x0BBE, 0x0000}},
    {0x0BCB, {0x0BC7, 0x0BBE, 0x0000}}, {0x0BCC, {0x0BC6, 0x0BD7, 0x0000}},
    {0x0CCB, {0x0CC2, 0x0CD5, 0x0000}}, {0x0D4A, {0x0D46, 0x0D3E, 0x0000}},
    {0x0D4B, {0x0D47, 0x0D3E, 0x0000}}, {0x0D4C, {0x0D46, 0x0D57, 0x0000}},
    {0x0DDC, {0x0DD9, 0x0DCF, 0x0000}}, {0x0DDD, {0x0DD9, 0x0DCF, 0x0000}},
    {0x0DDE, {0x0DD9, 0x0DDF, 0x0000}}, {0x1B06, {0x1B05, 0x1B35, 0x0000}},
    {0x1B08, {0x1B07, 0x1B35, 0x0000}}, {0x1B0A, {0x1B09, 0x1B35, 0x0000}},
    {0x1B0C, {0x1B0B, 0x1B35, 0x0000}}, {0x1B0E, {0x1B0D, 0x1B35, 0x0000}},
    {0x1B12, {0x1B11, 0x1B35, 0x0000}}, {0x1B40, {0x1B3E, 0x1B35, 0x0000}},
    {0x1B41, {0x1B3F, 0x1B35, 0x0000}}, {0x1109A, {0x11099, 0x0000, 0x0000}},
    {0x1109C, {0x1109B, 0x0000, 0x0000}}, {0x110AB, {0x110A5, 0x0000, 0x0000}},
    {0x1134B, {0x11347, 0x1133E, 0x0000}}, {0x1134C, {0x11347, 0x11357, 0x0000}},
    {0x114BB, {0x114B9, 0x0000, 0x0000}}, {0x114BC, {0x114B9, 0x114B0, 0x0000}},
    {0x114BE, {0x114B9, 0x114BD, 0x0000}}, {0x115BA, {0x115B8, 0x115AF, 0x0000}},
    {0x115BB, {0x115B9, 0x115AF, 0x0000}}, {0x11938, {0x11935, 0x11930, 0x0000}},
    {0x1D15E, {0x1D157, 0x1D165, 0x0000}}, {0x1D15F, {0x1D158, 0x1D165, 0x0000}},
    {0x1D160, {0x1D158, 0x1D165, 0x1D16E}}, {0x1D161, {0x1D158, 0x1D165, 0x1D16F}},
    {0x1D162, {0x1D158, 0x1D165, 0x1D170}}, {0x1D163, {0x1D158, 0x1D165, 0x1D171}},
    {0x1D164, {0x1D158, 0x1D165, 0x1D172}}, {0x1D1BB, {0x1D1B9, 0x1D165, 0x0000}},
    {0x1D1BC, {0x1D1BA, 0x1D165, 0x0000}}, {0x1D1BD, {0x1D1B9, 0x1D165, 0x1D16E}},
    {0x1D1BE, {0x1D1BA, 0x1D165, 0x1D16E}}, {0x1D1BF, {0x1D1B9, 0x1D165, 0x1D16F}},
    {0x1D1C0, {0x1D1BA, 0x1D165, 0x1D16F}},
};
// clang-format on

// The last entry of sorted `t` whose first (cp) <= cp, or nullptr.
uint32_t first_of(const CodeRange& r) { return r.first; }
uint32_t first_of(const LowerRun& r) { return r.first; }
uint32_t first_of(const LongDecomposition& r) { return r.cp; }
template <class T, size_t N>
const T* find_run(const T (&t)[N], uint32_t cp) {
  const T* it =
      std::upper_bound(t, t + N, cp, [](uint32_t c, const T& r) { return c < first_of(r); });
  return it == t ? nullptr : it - 1;
}
template <size_t N>
bool in_ranges(const CodeRange (&t)[N], uint32_t cp) {
  const CodeRange* r = find_run(t, cp);
  return r && cp <= r->last;
}

// tokenization.py _is_whitespace: \t \n \r and category Zs; plus U+2028 and U+2029 (Zl, Zp), which
// _clean_text keeps but whitespace_tokenize's str.split() splits on.
bool is_whitespace(uint32_t cp) {
  return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// _is_control: categories Cc and Cf, except \t \n \r.
bool is_control(uint32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return true;
  return cp >= 0xAD && in_ranges(kFormatRanges, cp);
}

// _is_punctuation: ASCII 33-47, 58-64, 91-96, 123-126 (e.g. "$" "+" "^" "`" are symbols in Unicode
// but punctuation here), and categories P*.
bool is_punctuation(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
           (cp >= 123 && cp <= 126);
  return in_ranges(kPunctuationRanges, cp);
}

// _is_chinese_char: the CJK Unified Ideographs blocks, as BERT lists them.
bool is_cjk(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// str.lower() of one code point (U+0130 'İ' -> 'i': Python gives "i" + U+0307, and the combining
// dot is stripped with the accents that always follow lowercasing).
uint32_t to_lower(uint32_t cp) {
  if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
  if (cp == 0x130) return 'i';
  const LowerRun* r = find_run(kLowerRuns, cp);
  if (!r || cp > r->last || (cp - r->first) % r->stride != 0) return cp;
  return static_cast<uint32_t>(static_cast<int64_t>(cp) + r->delta);
}

// The base of cp in kDecompositions, or 0 when it has none.
uint32_t decomposition_base(uint32_t cp) {
  if (cp >= 0x10000) return 0;
  const uint32_t* d =
      std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), cp << 16);
  return d != std::end(kDecompositions) && (*d >> 16) == cp ? *d & 0xFFFF : 0;
}

// _run_strip_accents of one code point, as far as wordpiece.h says: Mn dropped, kDecompositions,
// Hangul syllables to conjoining jamo (the algorithm of Unicode 14 sec. 3.12).
void append_stripped(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (const uint32_t base = decomposition_base(cp)) {
    utf8_append(base, out);
  } else if (const LongDecomposition* d = find_run(kLongDecompositions, cp); d && d->cp == cp) {
    for (uint32_t c : d->out)
      if (c != 0) utf8_append(c, out);
  } else if (cp >= 0xAC00 && cp <= 0xD7A3) {
    const uint32_t s = cp - 0xAC00;
    utf8_append(0x1100 + s / 588, out);
    utf8_append(0x1161 + (s % 588) / 28, out);
    if (s % 28 != 0) utf8_append(0x11A7 + s % 28, out);
  } else if (!in_ranges(kNonspacingMarkRanges, cp)) {
    utf8_append(cp, out);
  }
}

constexpr size_t kMaxInputCharsPerWord = 100;
const char* const kSpecials[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

}  // namespace

// ---------------------------------------------------------------------------------------------
// BasicTokenizer

std::vector<std::string> bert_basic_tokenize(const std::string& text, bool lowercase) {
  // One pass over the code points: the steps of tokenization.py act on one character at a time
  // (lower() and the accent table included), so cleaning, CJK padding, the whitespace split,
  // lowercasing, accent stripping and the punctuation split can be interleaved.
  std::vector<std::string> words;
  std::string cur, stripped;
  const auto flush = [&] {
    if (!cur.empty()) words.push_back(std::move(cur));
    cur.clear();
  };
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t len = utf8_char(text, i, &cp);
    if (len == 0) {  // invalid byte: dropped, as decode("utf-8", "ignore")
      ++i;
      continue;
    }
    i += len;
    if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
    if (is_whitespace(cp)) {
      flush();
      continue;
    }
    if (is_cjk(cp)) {  // a word of its own; neither lowercased, stripped nor punctuation
      flush();
      words.push_back(utf8_encode(cp));
      continue;
    }
    if (!lowercase) {
      if (is_punctuation(cp)) {
        flush();
        words.push_back(utf8_encode(cp));
      } else {
        utf8_append(cp, &cur);
      }
      continue;
    }
    stripped.clear();
    append_stripped(to_lower(cp), &stripped);
    for (size_t k = 0; k < stripped.size();) {
      uint32_t c = 0;
      const size_t n = utf8_char(stripped, k, &c);
      if (is_punctuation(c)) {
        flush();
        words.push_back(stripped.substr(k, n));
      } else {
        cur.append(stripped, k, n);
      }
      k += n;
    }
  }
  flush();
  return words;
}

// ---------------------------------------------------------------------------------------------
// WordPiece

WordPiece WordPiece::make(std::vector<std::string> tokens, bool lowercase,
                          const std::string& source, bool from_file) {
  const auto where = [&](size_t i) {
    return from_file ? concat(source, ":", i + 1) : concat(source, ": token ", i);
  };
  WordPiece wp;
  wp.lowercase_ = lowercase;
  wp.source_ = source;
  wp.ids_.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    PARE_CHECK(!t.empty(), where(i), ": empty token (each ", from_file ? "line" : "entry",
               " must hold one token)");
    PARE_CHECK(t.find_first_of("\r\n") == std::string::npos, where(i), ": token '",
               printable(t, true), "' holds a line break");
    for (size_t k = 0; k < t.size();) {
      uint32_t cp = 0;
      const size_t n = utf8_char(t, k, &cp);
      PARE_CHECK(n > 0, where(i), ": token '", printable(t, true),
                 "' is not valid UTF-8 (byte offset ", k, " in the token)");
      k += n;
    }
    const auto [it, fresh] = wp.ids_.emplace(t, static_cast<int64_t>(i));
    PARE_CHECK(fresh, where(i), ": token '", printable(t, true), "' repeats ",
               from_file ? "line " : "token ", from_file ? it->second + 1 : it->second,
               " (each token may appear once)");
    wp.max_token_chars_ = std::max(wp.max_token_chars_, utf8_count(t));
  }
  std::string missing;
  int64_t* const special_ids[5] = {&wp.pad_id_, &wp.unk_id_, &wp.cls_id_, &wp.sep_id_,
                                   &wp.mask_id_};
  for (size_t k = 0; k < 5; ++k) {
    const auto it = wp.ids_.find(kSpecials[k]);
    if (it != wp.ids_.end())
      *special_ids[k] = it->second;
    else
      missing += std::string(missing.empty() ? "" : ", ") + kSpecials[k];
  }
  PARE_CHECK(missing.empty(), source, ": the vocabulary has no ", missing,
             " (a BERT vocabulary must hold [PAD], [UNK], [CLS], [SEP] and [MASK])");
  wp.tokens_ = std::move(tokens);
  return wp;
}

WordPiece WordPiece::load(const std::string& vocab_path, bool lowercase) {
  const std::string bytes = read_file(vocab_path);
  std::vector<std::string> tokens;
  size_t i = bytes.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  while (i < bytes.size()) {
    size_t end = bytes.find_first_of("\r\n", i);
    if (end == std::string::npos) end = bytes.size();
    tokens.push_back(bytes.substr(i, end - i));
    i = end;  // past "\r\n", "\n" or "\r"
    if (i < bytes.size()) i += bytes.compare(i, 2, "\r\n") == 0 ? 2 : 1;
  }
  return make(std::move(tokens), lowercase, vocab_path, true);
}

WordPiece WordPiece::from_tokens(std::vector<std::string> tokens, bool lowercase,
                                 const std::string& source) {
  return make(std::move(tokens), lowercase, source, false);
}

void WordPiece::append_ids(const std::string& word, std::vector<int64_t>* out) const {
  std::vector<size_t> off;  // byte offset of each code point, then word.size()
  for (size_t i = 0; i < word.size(); i += utf8_len(static_cast<unsigned char>(word[i])))
    off.push_back(i);
  const size_t n = off.size();
  off.push_back(word.size());
  if (n > kMaxInputCharsPerWord) {
    out->push_back(unk_id_);
    return;
  }
  const size_t first = out->size();
  std::string key;
  for (size_t start = 0; start < n;) {
    int64_t found = -1;
    size_t end = std::min(n, start + max_token_chars_);
    for (; end > start; --end) {
      key.assign(start > 0 ? "##" : "");
      key.append(word, off[start], off[end] - off[start]);
      const auto it = ids_.find(key);
      if (it != ids_.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // no piece matches here: the whole word is unknown
      out->resize(first);
      out->push_back(unk_id_);
      return;
    }
    out->push_back(found);
    start = end;
  }
}

std::vector<int64_t> WordPiece::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const std::string& w : bert_basic_tokenize(text, lowercase_)) append_ids(w, &ids);
  return ids;
}

std::vector<int64_t> WordPiece::encode_for_classification(const std::string& text, int64_t max_len,
                                                          bool* truncated) const {
  PARE_CHECK(max_len >= 2,
             "encode_for_classification: max_len must be at least 2 ([CLS] and [SEP]), got ",
             max_len);
  std::vector<int64_t> ids{cls_id_};
  for (const std::string& w : bert_basic_tokenize(text, lowercase_)) append_ids(w, &ids);
  const bool cut = static_cast<int64_t>(ids.size()) > max_len - 1;
  if (cut) ids.resize(static_cast<size_t>(max_len - 1));
  ids.push_back(sep_id_);
  if (truncated) *truncated = cut;
  return ids;
}

std::vector<std::string> WordPiece::tokenize(const std::string& text) const {
  std::vector<std::string> out;
  for (int64_t id : encode(text)) out.push_back(tokens_[static_cast<size_t>(id)]);
  return out;
}

std::string WordPiece::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& t = token(ids[i]);
    if (i > 0 && t.compare(0, 2, "##") == 0) {
      out.append(t, 2, std::string::npos);
    } else {
      if (i > 0) out.push_back(' ');
      out += t;
    }
  }
  return out;
}

const std::string& WordPiece::token(int64_t id) const {
  PARE_CHECK(id >= 0 && id < vocab_size(), source_, ": token id ", id,
             " is outside the vocabulary [0, ", vocab_size(), ")");
  return tokens_[static_cast<size_t>(id)];
}

int64_t WordPiece::id(const std::string& token) const {
  const auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

void WordPiece::save(const std::string& path) const {
  std::string bytes;
  for (const std::string& t : tokens_) bytes += t + "\n";
  write_file_atomic(path, bytes);
}

// ---------------------------------------------------------------------------------------------
// Vocabulary builder

namespace {

// Training state of build_wordpiece_vocab: the distinct words as token ids, token and pair
// frequencies (weighted by word counts), and a max-heap of pair scores.
//
// The heap is lazily invalidated: an entry is used only while its pair count and score still
// equal the pair's current ones. Whenever a merge changes a pair's count, or the frequency of one
// of its tokens (which changes its score, up or down), a fresh entry is pushed for it. The pairs
// of a token are found through pairs_of_, which may hold dead pairs and repeats (cleaned when
// read).
class Trainer {
 public:
  Trainer(std::vector<std::string> vocab, std::vector<std::vector<int32_t>> words,
          std::vector<int64_t> counts, bool by_count)
      : vocab_(std::move(vocab)), words_(std::move(words)), counts_(std::move(counts)), by_count_(by_count) {
    for (size_t i = 0; i < vocab_.size(); ++i) index_.emplace(vocab_[i], static_cast<int32_t>(i));
    freq_.assign(vocab_.size(), 0);
    pairs_of_.resize(vocab_.size());
    for (size_t w = 0; w < words_.size(); ++w) {
      const auto& s = words_[w];
      for (int32_t t : s) freq_[static_cast<size_t>(t)] += counts_[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        Pair& p = add_pair(key(s[i], s[i + 1]));
        p.count += counts_[w];
        if (p.words.empty() || p.words.back() != static_cast<int32_t>(w))
          p.words.push_back(static_cast<int32_t>(w));
      }
    }
    rebuild_heap();
  }

  // Merges best pairs until the vocabulary holds vocab_size tokens or no pair is left.
  std::vector<std::string> run(size_t vocab_size) {
    while (vocab_.size() < vocab_size && !heap_.empty()) {
      const Cand top = heap_.top();
      heap_.pop();
      const auto it = pairs_.find(key(top.a, top.b));
      if (it == pairs_.end() || it->second.count != top.count ||
          score(top.a, top.b, top.count) != top.score)
        continue;  // stale
      merge(top.a, top.b, std::move(it->second.words));
      if (heap_.size() > 4 * pairs_.size() + (size_t{1} << 20)) rebuild_heap();
    }
    return std::move(vocab_);
  }

 private:
  struct Pair {
    int64_t count = 0;
    int64_t pushed = -1;         // number of the merge after which an entry was last pushed
    int64_t seen = -1;           // visit stamp that drops repeats from pairs_of_ lists
    std::vector<int32_t> words;  // indices of words that hold (or held) the pair, ascending
  };
  struct Cand {
    double score;
    int64_t count;
    int32_t a, b;
  };
  // Heap order: higher score, then higher count, then smaller a, then smaller b on top.
  struct Lower {
    bool operator()(const Cand& x, const Cand& y) const {
      if (x.score != y.score) return x.score < y.score;
      if (x.count != y.count) return x.count < y.count;
      if (x.a != y.a) return x.a > y.a;
      return x.b > y.b;
    }
  };

  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static int32_t first(uint64_t k) { return static_cast<int32_t>(k >> 32); }
  static int32_t second(uint64_t k) { return static_cast<int32_t>(k & 0xFFFFFFFFu); }

  double score(int32_t a, int32_t b, int64_t count) const {
    if (by_count_) return static_cast<double>(count);
    return static_cast<double>(count) / (static_cast<double>(freq_[static_cast<size_t>(a)]) *
                                         static_cast<double>(freq_[static_cast<size_t>(b)]));
  }

  // The pair of `k`, created (and listed under both tokens) when it is not live.
  Pair& add_pair(uint64_t k) {
    const auto [it, fresh] = pairs_.try_emplace(k);
    if (fresh) {
      pairs_of_[static_cast<size_t>(first(k))].push_back(k);
      if (second(k) != first(k)) pairs_of_[static_cast<size_t>(second(k))].push_back(k);
    }
    return it->second;
  }

  void push(uint64_t k, Pair& p) {
    if (p.pushed == merges_) return;
    p.pushed = merges_;
    heap_.push(Cand{score(first(k), second(k), p.count), p.count, first(k), second(k)});
  }

  void rebuild_heap() {
    std::vector<Cand> all;
    all.reserve(pairs_.size());
    for (const auto& [k, p] : pairs_)
      all.push_back(Cand{score(first(k), second(k), p.count), p.count, first(k), second(k)});
    heap_ = std::priority_queue<Cand, std::vector<Cand>, Lower>(Lower(), std::move(all));
  }

  // Pushes every live pair of token t (its frequency changed) and drops dead or repeated keys from
  // its list.
  void push_pairs_of(int32_t t) {
    ++visit_;
    auto& list = pairs_of_[static_cast<size_t>(t)];
    size_t o = 0;
    for (uint64_t k : list) {
      const auto it = pairs_.find(k);
      if (it == pairs_.end() || it->second.seen == visit_) continue;
      it->second.seen = visit_;
      push(k, it->second);
      list[o++] = k;
    }
    list.resize(o);
  }

  void merge(int32_t a, int32_t b, std::vector<int32_t> where) {
    ++merges_;
    const std::string& right = vocab_[static_cast<size_t>(b)];
    PARE_ASSERT(right.compare(0, 2, "##") == 0, "right token of a pair: ", right);
    const std::string merged = vocab_[static_cast<size_t>(a)] + right.substr(2);
    int32_t c;
    const auto found = index_.find(merged);
    if (found != index_.end()) {
      c = found->second;
    } else {
      c = static_cast<int32_t>(vocab_.size());
      vocab_.push_back(merged);
      index_.emplace(merged, c);
      freq_.push_back(0);
      pairs_of_.emplace_back();
    }

    // Rewrite the words; collect pair count changes and the (pair, word) of new pairs with c.
    std::sort(where.begin(), where.end());
    where.erase(std::unique(where.begin(), where.end()), where.end());
    deltas_.clear();
    new_words_.clear();
    int64_t merged_count = 0;
    for (int32_t w : where) {
      auto& s = words_[static_cast<size_t>(w)];
      const int64_t n = counts_[static_cast<size_t>(w)];
      bool holds = false;
      for (size_t i = 0; i + 1 < s.size() && !holds; ++i) holds = s[i] == a && s[i + 1] == b;
      if (!holds) continue;  // a stale index: an earlier merge took the pair out of this word
      for (size_t i = 0; i + 1 < s.size(); ++i) deltas_.emplace_back(key(s[i], s[i + 1]), -n);
      size_t o = 0;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          s[o++] = c;
          i += 2;
          merged_count += n;
        } else {
          s[o++] = s[i++];
        }
      }
      s.resize(o);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = key(s[i], s[i + 1]);
        deltas_.emplace_back(k, n);
        if (s[i] == c || s[i + 1] == c) new_words_.emplace_back(k, w);
      }
    }
    freq_[static_cast<size_t>(a)] -= merged_count;
    freq_[static_cast<size_t>(b)] -= merged_count;
    freq_[static_cast<size_t>(c)] += merged_count;

    // Apply the count changes (a pair whose count falls to 0 is dead and removed).
    std::sort(deltas_.begin(), deltas_.end());
    std::vector<uint64_t> changed;
    for (size_t i = 0; i < deltas_.size();) {
      const uint64_t k = deltas_[i].first;
      int64_t d = 0;
      for (; i < deltas_.size() && deltas_[i].first == k; ++i) d += deltas_[i].second;
      if (d == 0) continue;
      Pair& p = add_pair(k);
      p.count += d;
      PARE_ASSERT(p.count >= 0, "pair count below zero");
      if (p.count == 0)
        pairs_.erase(k);
      else
        changed.push_back(k);
    }
    std::sort(new_words_.begin(), new_words_.end());
    for (const auto& [k, w] : new_words_) {
      const auto it = pairs_.find(k);
      if (it != pairs_.end() && (it->second.words.empty() || it->second.words.back() != w))
        it->second.words.push_back(w);
    }
    // New entries: pairs whose count changed, and every pair of a, b and c (frequency changed).
    for (uint64_t k : changed) push(k, pairs_.at(k));
    push_pairs_of(a);
    if (b != a) push_pairs_of(b);
    push_pairs_of(c);
  }

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int32_t> index_;
  std::vector<std::vector<int32_t>> words_;   // each distinct word as token ids
  std::vector<int64_t> counts_;               // occurrences of each word
  bool by_count_ = false;                     // WordPieceMerge::kCount: score = freq(a, b)
  std::vector<int64_t> freq_;                 // occurrences of each token in the current words
  std::unordered_map<uint64_t, Pair> pairs_;  // live pairs (count > 0)
  std::vector<std::vector<uint64_t>> pairs_of_;
  std::priority_queue<Cand, std::vector<Cand>, Lower> heap_;
  std::vector<std::pair<uint64_t, int64_t>> deltas_;
  std::vector<std::pair<uint64_t, int32_t>> new_words_;
  int64_t merges_ = 0, visit_ = 0;
};

}  // namespace

WordPiece build_wordpiece_vocab(const std::vector<std::string>& texts, int64_t vocab_size,
                                bool lowercase, int64_t min_char_frequency, WordPieceMerge merge) {
  PARE_CHECK(min_char_frequency >= 1,
             "build_wordpiece_vocab: min_char_frequency must be at least 1, got ",
             min_char_frequency);
  std::unordered_map<std::string, int64_t> word_counts;
  for (const std::string& text : texts)
    for (std::string& w : bert_basic_tokenize(text, lowercase)) ++word_counts[std::move(w)];
  std::vector<std::pair<std::string, int64_t>> words(word_counts.begin(), word_counts.end());
  word_counts.clear();
  std::sort(words.begin(), words.end());

  // Characters of the words of at most 100 characters, with their frequencies.
  std::vector<std::vector<uint32_t>> chars(words.size());
  std::unordered_map<uint32_t, int64_t> char_freq;
  for (size_t w = 0; w < words.size(); ++w) {
    const std::string& s = words[w].first;
    for (size_t i = 0; i < s.size();) {
      uint32_t cp = 0;
      i += utf8_char(s, i, &cp);
      chars[w].push_back(cp);
    }
    if (chars[w].size() > kMaxInputCharsPerWord) chars[w].clear();
    for (uint32_t cp : chars[w]) char_freq[cp] += words[w].second;
  }
  std::set<std::string> alphabet;  // std::string orders by unsigned bytes: code point order
  for (const auto& [cp, f] : char_freq) {
    if (f < min_char_frequency) continue;
    alphabet.insert(utf8_encode(cp));
    if (!is_punctuation(cp) && !is_cjk(cp)) alphabet.insert("##" + utf8_encode(cp));
  }
  std::vector<std::string> vocab(kSpecials, kSpecials + 5);
  vocab.insert(vocab.end(), alphabet.begin(), alphabet.end());
  PARE_CHECK(vocab_size >= static_cast<int64_t>(vocab.size()), "build_wordpiece_vocab: vocab_size ",
             vocab_size, " is smaller than the 5 special tokens + ", alphabet.size(),
             " character tokens (raise vocab_size, or min_char_frequency to drop rare characters)");

  // Each word as its characters: "c" first, "##c" after; words with a rare character left out.
  std::unordered_map<std::string, int32_t> index;
  for (size_t i = 0; i < vocab.size(); ++i) index.emplace(vocab[i], static_cast<int32_t>(i));
  std::vector<std::vector<int32_t>> split;
  std::vector<int64_t> counts;
  for (size_t w = 0; w < words.size(); ++w) {
    std::vector<int32_t> s;
    for (size_t i = 0; i < chars[w].size(); ++i) {
      const auto it = index.find((i > 0 ? "##" : "") + utf8_encode(chars[w][i]));
      if (it == index.end()) {
        s.clear();
        break;
      }
      s.push_back(it->second);
    }
    if (s.empty()) continue;
    split.push_back(std::move(s));
    counts.push_back(words[w].second);
  }
  words.clear();
  chars.clear();
  Trainer trainer(std::move(vocab), std::move(split), std::move(counts), merge == WordPieceMerge::kCount);
  return WordPiece::from_tokens(trainer.run(static_cast<size_t>(vocab_size)), lowercase,
                                "build_wordpiece_vocab");
}

}  // namespace pare
