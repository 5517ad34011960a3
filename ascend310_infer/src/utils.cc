#include "inc/utils.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>

namespace infer_utils {

std::string RealPath(const std::string &path) {
  char resolved[PATH_MAX];
  if (path.empty() || realpath(path.c_str(), resolved) == nullptr) {
    return "";
  }
  return std::string(resolved);
}

bool IsDirectory(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

static bool IsRegularFile(const std::string &path) {
  struct stat st;  // stat() follows symlinks, so links to files count too
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

static bool HasBinSuffix(const std::string &name) {
  const std::string suffix = ".bin";
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> ListBinFiles(const std::string &dir) {
  std::vector<std::string> names;
  DIR *handle = opendir(dir.c_str());
  if (handle == nullptr) {
    return names;
  }
  for (struct dirent *entry = readdir(handle); entry != nullptr; entry = readdir(handle)) {
    const std::string name = entry->d_name;
    if (HasBinSuffix(name) && IsRegularFile(dir + "/" + name)) {
      names.push_back(name);
    }
  }
  closedir(handle);

  // readdir() order is unspecified; sort by name for a reproducible order.
  std::sort(names.begin(), names.end());
  std::vector<std::string> paths;
  paths.reserve(names.size());
  for (const auto &name : names) {
    paths.push_back(dir + "/" + name);
  }
  return paths;
}

std::string FileStem(const std::string &path) {
  const size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const size_t dot = name.find_last_of('.');
  if (dot != std::string::npos && dot > 0) {
    name.resize(dot);
  }
  return name;
}

bool ReadFile(const std::string &path, std::vector<char> *data) {
  data->clear();
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    return false;
  }
  const std::streamsize size = in.tellg();
  if (size < 0) {
    return false;
  }
  data->resize(static_cast<size_t>(size));
  in.seekg(0, std::ios::beg);
  if (size > 0 && !in.read(data->data(), size)) {
    data->clear();
    return false;
  }
  return true;
}

bool WriteFile(const std::string &path, const void *data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return false;
  }
  if (size > 0) {
    out.write(static_cast<const char *>(data), static_cast<std::streamsize>(size));
  }
  out.close();
  return !out.fail();
}

bool MakeDirs(const std::string &path) {
  if (path.empty()) {
    return false;
  }
  // Create each prefix ending at a '/', then the full path.
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    const std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return false;
    }
  }
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return false;
  }
  return IsDirectory(path);
}

}  // namespace infer_utils
