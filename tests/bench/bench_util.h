// What the benchmark programs share: their list arguments, their one statistic and their JSON.
#pragma once
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hs::bench {

// "a|b|c" split at `sep` ("dense|s2:stride=8" with '|', "1,4" with ',').
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
  return out;
}

// "1,4,16" as numbers.
inline std::vector<int> int_list(const std::string& s) {
  std::vector<int> out;
  for (const std::string& item : split(s, ',')) out.push_back(std::stoi(item));
  return out;
}

// The median (the mean of the middle two for an even count; 0 for none).
inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Writes the raw numbers and says where.
inline void write_json(const std::string& path, const nlohmann::json& out) {
  std::ofstream(path) << out.dump(2) << "\n";
  std::printf("\nwrote %s\n", path.c_str());
}

}  // namespace hs::bench
