// The one include of cpp-httplib. Debian's libcpp-httplib-dev ships the split build: the
// header only declares, the code is in libcpp-httplib.so, which was compiled with OpenSSL,
// zlib and Brotli support. Those macros change the layout of httplib::Request, so every
// translation unit must see them exactly as the library did (its pkg-config Cflags).
#pragma once

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>
