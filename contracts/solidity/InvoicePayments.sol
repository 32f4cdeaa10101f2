// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @dev The one ERC-20 function this contract calls. Declared here so that `abi.encodeCall`
///      type-checks the call; the return value is decoded by hand (see `payToken`).
interface IERC20TransferFrom {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title InvoicePayments
/// @notice Non-custodial payment of settleproof invoices. A payment moves the funds from the
///         payer straight to the merchant inside the same transaction and emits one
///         `InvoicePaid` event that the settleproof nodes index and later settle in batches.
/// @dev The contract has no storage, no owner and never holds funds: `payNative` forwards
///      `msg.value` in full and `payToken` moves tokens with `transferFrom(payer -> merchant)`.
///      It has no `receive` or `fallback` function, so plain transfers of native coin to it
///      revert. Nothing here checks that an invoice exists, is unpaid or is paid in full:
///      the off-chain nodes match `InvoicePaid` events against their invoices.
contract InvoicePayments {
    /// @notice An invoice was paid.
    /// @param invoiceId Identifier of the invoice, chosen off chain.
    /// @param merchant Recipient of the funds.
    /// @param payer The account that paid (`msg.sender`).
    /// @param token ERC-20 token paid with, or `address(0)` for the chain's native coin.
    /// @param amount Amount paid, in the token's (or native coin's) smallest unit.
    event InvoicePaid(
        bytes32 indexed invoiceId, address indexed merchant, address indexed payer, address token, uint256 amount
    );

    /// @notice The payment amount is zero.
    error ZeroAmount();
    /// @notice The merchant is the zero address.
    error ZeroMerchant();
    /// @notice `payToken` was called with `token == address(0)`; use `payNative` for native coin.
    error NativeTokenViaPayToken();
    /// @notice The token address has no contract code.
    /// @param token The address given as token.
    error TokenHasNoCode(address token);
    /// @notice Forwarding the native coin to the merchant failed (the merchant reverted).
    error NativeTransferFailed();
    /// @notice The token's `transferFrom` reverted or returned something other than nothing or `true`.
    error TokenTransferFailed();

    /// @notice Pays invoice `invoiceId` to `merchant` with the native coin sent along (`msg.value`).
    /// @dev Forwards all of `msg.value` to `merchant` with a plain call (all remaining gas), so
    ///      a merchant contract may run code on receipt; it cannot affect any state here because
    ///      there is none.
    /// @param invoiceId Identifier of the invoice.
    /// @param merchant Recipient of the payment.
    function payNative(bytes32 invoiceId, address payable merchant) external payable {
        if (msg.value == 0) revert ZeroAmount();
        if (merchant == address(0)) revert ZeroMerchant();

        (bool ok,) = merchant.call{value: msg.value}("");
        if (!ok) revert NativeTransferFailed();

        emit InvoicePaid(invoiceId, merchant, msg.sender, address(0), msg.value);
    }

    /// @notice Pays invoice `invoiceId` to `merchant` with `amount` of ERC-20 `token`, taken from
    ///         the caller with `transferFrom`. The caller must have approved this contract for at
    ///         least `amount` beforehand.
    /// @dev Accepts tokens whose `transferFrom` returns nothing (e.g. USDT) or returns `true`;
    ///      anything else (a revert, `false`, malformed return data) reverts with
    ///      `TokenTransferFailed`. Fee-on-transfer tokens deliver less than `amount` to the
    ///      merchant while the event reports `amount`; the nodes must not accept such tokens.
    /// @param invoiceId Identifier of the invoice.
    /// @param merchant Recipient of the payment.
    /// @param token The ERC-20 token contract.
    /// @param amount Amount to pay, in the token's smallest unit.
    function payToken(bytes32 invoiceId, address merchant, address token, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        if (merchant == address(0)) revert ZeroMerchant();
        if (token == address(0)) revert NativeTokenViaPayToken();
        if (token.code.length == 0) revert TokenHasNoCode(token);

        (bool ok, bytes memory ret) =
            token.call(abi.encodeCall(IERC20TransferFrom.transferFrom, (msg.sender, merchant, amount)));
        if (!ok || (ret.length != 0 && (ret.length < 32 || abi.decode(ret, (uint256)) != 1))) {
            revert TokenTransferFailed();
        }

        emit InvoicePaid(invoiceId, merchant, msg.sender, token, amount);
    }
}
