// CSI_ASSIGN_OR_RETURN(decl, expr): evaluates the Result<T> `expr`; returns
// its Status from the enclosing function when it failed, else declares
// `decl` from its value. For csi/ only (src/util/status.h has no such macro).
#pragma once

#include "src/util/status.h"

#define CSI_CONCAT_INNER(a, b) a##b
#define CSI_CONCAT(a, b) CSI_CONCAT_INNER(a, b)
#define CSI_ASSIGN_OR_RETURN(decl, expr) CSI_ASSIGN_OR_RETURN_IMPL(CSI_CONCAT(_csi_r, __LINE__), decl, expr)
#define CSI_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  decl = std::move(tmp).value()
