// net/net.h
//
// Everything in weft::net: addresses, name resolution, TCP, UDP and the
// stream adapters. See each header.
#pragma once

#include "net/address.h"
#include "net/io.h"
#include "net/resolve.h"
#include "net/tcp.h"
#include "net/udp.h"
